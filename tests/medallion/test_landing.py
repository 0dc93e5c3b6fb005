"""One bad file never costs the good ones: every landed record is ingested or rejected, by name.

Each case writes a small landing file and checks the accounting (readable rows plus rejected rows
equal the records in the file; an unreadable file is one rejected row) and that the error names
the file and, for line formats, the line.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from medallion.landing import (
    DELIVERED_MARKER,
    LINEAGE_COLUMNS,
    LandingFile,
    landing_delivered,
    landing_files,
    quarantine_file,
    quarantined_files,
    read_landing_file,
    to_bronze,
)
from medallion.sources import FORMATS
from reference_data import GeneratorConfig, generate
from reference_data.generator import TABLES

DAY = date(2024, 1, 1)
FRAME = pl.DataFrame(
    {
        "id": ["a", "b", "c", "d", "e"],
        "amount": [1.5, 2.0, 3.25, 4.0, 5.5],
        "at": pl.datetime_range(
            datetime(2024, 1, 1), datetime(2024, 1, 1, 4), "1h", time_unit="us", eager=True
        ),
    }
)


def landed(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / "transactions" / DAY.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    getattr(FRAME, f"write_{'ndjson' if fmt == 'jsonl' else fmt}")(buffer)
    return buffer.getvalue()


def accounted(landing: LandingFile, records: int) -> pl.DataFrame:
    """Bronze of the file, after checking that each of its records is read or rejected once."""
    assert landing.frame.height == landing.row_numbers.len()
    assert landing.frame.height + landing.rejected.height == records
    bronze = to_bronze(
        landing,
        source_file=landing.path.name,
        ingested_at=datetime(2024, 1, 2, tzinfo=UTC),
        run_id="run",
    )
    assert bronze.height == records
    assert bronze.columns == [*landing.schema.names(), *LINEAGE_COLUMNS]
    assert bronze.schema["_row_number"] == pl.Int64
    assert bronze["_error"].null_count() == landing.frame.height
    return bronze


def whole_file_error(landing: LandingFile) -> str:
    """The error of an unreadable file, after checking it travels to bronze as one row."""
    assert landing.unreadable and landing.error is not None
    assert landing.frame.is_empty() and landing.schema == pl.Schema()
    bronze = accounted(landing, records=1)
    assert bronze.select("_row_number", "_error", "_raw").rows() == [(None, landing.error, None)]
    assert landing.path.name in landing.error
    return landing.error


def test_clean_file_rows_are_numbered_in_file_order(tmp_path: Path) -> None:
    landing = read_landing_file(landed(tmp_path, "t.parquet", encoded("parquet")))
    assert not landing.unreadable and landing.error is None and landing.rejected.is_empty()
    assert landing.frame.equals(FRAME)
    bronze = accounted(landing, records=5)
    assert bronze["_row_number"].to_list() == [0, 1, 2, 3, 4]
    assert bronze["_raw"].null_count() == 5


def test_truncated_parquet_is_one_rejected_row(tmp_path: Path) -> None:
    content = encoded("parquet")
    landing = read_landing_file(landed(tmp_path, "t.parquet", content[: len(content) // 2]))
    assert whole_file_error(landing).startswith("t.parquet: unreadable parquet: ")


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_file_is_one_rejected_row(tmp_path: Path, fmt: str) -> None:
    landing = read_landing_file(landed(tmp_path, f"t.{fmt}", b""))
    assert whole_file_error(landing) == f"t.{fmt}: empty file: 0 bytes"
    assert landing.format == fmt


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_corrupt_avro_is_one_rejected_row(tmp_path: Path, damage: str) -> None:
    content = encoded("avro")
    if damage == "truncated":
        content = content[: len(content) // 2]
    else:
        content = content[:40] + b"\x00garbage" * 8 + content[104:]
    landing = read_landing_file(landed(tmp_path, "t.avro", content))
    assert whole_file_error(landing).startswith("t.avro: unreadable avro: ")


def test_broken_json_line_is_rejected_and_the_rest_ingested(tmp_path: Path) -> None:
    lines = encoded("jsonl").splitlines(keepends=True)
    lines[2] = b'{"id": "c", "amount": \n'
    landing = read_landing_file(landed(tmp_path, "t.jsonl", b"".join(lines)))
    assert not landing.unreadable
    good = b"".join(lines[:2] + lines[3:])
    # Read by polars like any clean file: the same types as the fast path gives.
    assert landing.frame.equals(pl.read_ndjson(io.BytesIO(good), infer_schema_length=None))
    assert landing.schema["amount"] == pl.Float64
    assert landing.row_numbers.to_list() == [0, 1, 3, 4]
    assert landing.rejected.rows() == [
        (2, "t.jsonl line 3: invalid JSON: Expecting value at column 23", '{"id": "c", "amount": ')
    ]
    bronze = accounted(landing, records=5)
    assert bronze["_row_number"].to_list() == [0, 1, 2, 3, 4]
    assert bronze["id"].to_list() == ["a", "b", None, "d", "e"]


def test_blank_and_non_object_json_lines(tmp_path: Path) -> None:
    content = b'{"id": "a"}\n\n[1, 2]\n{"id": "b"}\n\n'
    landing = read_landing_file(landed(tmp_path, "t.jsonl", content))
    assert landing.row_numbers.to_list() == [0, 2]
    assert landing.rejected.rows() == [(1, "t.jsonl line 3: not a JSON object", "[1, 2]")]
    accounted(landing, records=3)


def test_non_utf8_byte_in_a_json_line(tmp_path: Path) -> None:
    content = b'{"id": "a"}\n{"id": "b"}\n{"id": "\xffc"}\n{"id": "d"}\n'
    landing = read_landing_file(landed(tmp_path, "t.jsonl", content))
    assert landing.frame["id"].to_list() == ["a", "b", "d"]
    assert landing.rejected.rows() == [
        (
            2,
            "t.jsonl line 3: invalid UTF-8 byte 0xff at byte offset 8 of the line",
            '{"id": "\ufffdc"}',
        )
    ]
    accounted(landing, records=4)


def test_non_utf8_byte_in_a_csv_line(tmp_path: Path) -> None:
    content = b"id,amount\na,1.5\nb,\xff2\nc,3\n"
    landing = read_landing_file(landed(tmp_path, "t.csv", content))
    assert landing.frame.rows() == [("a", "1.5"), ("c", "3")]
    assert landing.schema == pl.Schema({"id": pl.String, "amount": pl.String})
    assert landing.rejected.rows() == [
        (1, "t.csv line 3: invalid UTF-8 byte 0xff at byte offset 2 of the line", "b,\ufffd2")
    ]
    bronze = accounted(landing, records=3)
    assert bronze["_row_number"].to_list() == [0, 1, 2]


def test_csv_row_with_too_many_fields(tmp_path: Path) -> None:
    content = b'id,amount\na,1.5\n"b\nb",2\nc,3,extra\nd,4'
    landing = read_landing_file(landed(tmp_path, "t.csv", content))
    assert landing.frame.rows() == [("a", "1.5"), ("b\nb", "2"), ("d", "4")]
    assert landing.row_numbers.to_list() == [0, 1, 3]
    # Line 5: the quoted value of the record before spans lines 3 and 4.
    assert landing.rejected.rows() == [(2, "t.csv line 5: 3 fields, the header has 2", "c,3,extra")]
    accounted(landing, records=4)


def test_header_only_csv_is_zero_rows_not_an_error(tmp_path: Path) -> None:
    landing = read_landing_file(landed(tmp_path, "t.csv", b"id,amount\n"))
    assert not landing.unreadable and landing.rejected.is_empty()
    assert landing.schema == pl.Schema({"id": pl.String, "amount": pl.String})
    accounted(landing, records=0)


def test_csv_without_header_is_unreadable(tmp_path: Path) -> None:
    landing = read_landing_file(landed(tmp_path, "t.csv", b"\n\n"))
    assert whole_file_error(landing) == "t.csv: no header"


def test_quarantined_file_is_moved_and_still_accounted_for(tmp_path: Path) -> None:
    content = encoded("parquet")
    path = landed(tmp_path, "t.parquet", content[:100])
    good = landed(tmp_path, "u.csv", b"id\na\n")
    landing = read_landing_file(path)
    assert landing.error is not None

    moved = quarantine_file(tmp_path, path, landing.error)
    assert moved == tmp_path / "_quarantine" / "transactions" / DAY.isoformat() / "t.parquet"
    assert not path.exists() and Path(moved).read_bytes() == content[:100]
    record = json.loads(Path(moved).with_name("t.parquet.error.json").read_text())
    assert record["file"] == f"transactions/{DAY.isoformat()}/t.parquet"
    assert record["error"] == landing.error
    assert datetime.fromisoformat(record["quarantined_at"]).tzinfo is not None
    assert landing_files(tmp_path, "transactions", DAY) == [good]

    again = quarantined_files(tmp_path, "transactions", DAY)
    assert [(f.path, f.format, f.error) for f in again] == [(path, "parquet", landing.error)]
    accounted(again[0], records=1)

    path.write_bytes(content)  # re-delivered under the same name: it supersedes the copy
    assert quarantined_files(tmp_path, "transactions", DAY) == []


def test_delivery_needs_a_file_a_quarantined_file_or_the_marker(tmp_path: Path) -> None:
    folder = tmp_path / "transactions" / DAY.isoformat()
    assert not landing_delivered(tmp_path, "transactions", DAY)
    folder.mkdir(parents=True)
    assert not landing_delivered(tmp_path, "transactions", DAY)
    (folder / DELIVERED_MARKER).touch()
    assert landing_delivered(tmp_path, "transactions", DAY)

    (folder / DELIVERED_MARKER).unlink()
    path = landed(tmp_path, "t.avro", b"")
    assert landing_delivered(tmp_path, "transactions", DAY)
    quarantine_file(tmp_path, path, "t.avro: empty file: 0 bytes")
    assert not any(folder.iterdir())
    assert landing_delivered(tmp_path, "transactions", DAY)


def test_generator_marks_every_day_delivered_even_without_rows(tmp_path: Path) -> None:
    config = GeneratorConfig(seed=3, days=3, customers=50, merchants=10, transactions_per_day=50)
    summary = generate(config, tmp_path)
    days = [config.start + timedelta(days=d) for d in range(config.days)]
    empty = [(t, d) for t in TABLES for d in days if summary.file(t, d) is None]
    assert ("chargebacks", config.start) in empty
    for table in TABLES:
        for day in days:
            marker = tmp_path / table / day.isoformat() / DELIVERED_MARKER
            assert marker.read_bytes() == b"", (table, day)
            assert landing_delivered(tmp_path, table, day)
    for table, day in empty:
        assert landing_files(tmp_path, table, day) == []
