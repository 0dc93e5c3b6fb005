"""Every landing format yields the same silver rows, and drift in a file is named precisely."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from assets.sources.transactions import TRANSACTIONS
from medallion.landing import read_landing_file, to_bronze
from medallion.schema_drift import detect_schema_drift
from medallion.silver import KnownIds, SilverResult, to_silver
from medallion.sources import FORMATS
from reference_data import generate
from reference_data.generator import TABLES
from tests.conftest import with_config

KEY = b"format-test-key"


def silver_rows(landing: Path, fmt: str) -> dict[str, pl.DataFrame]:
    config = with_config(days=8, formats=(fmt,), transactions_per_day=300)
    summary = generate(config, landing)
    results: dict[str, list[SilverResult]] = {t: [] for t in TABLES}

    def known(table: str) -> KnownIds:
        """Ids cleaned so far, as the pipeline knows them (files come in table order)."""
        key = TABLES[table].primary_key
        return KnownIds(
            pl.concat([r.silver[key] for r in results[table]]),
            pl.concat([r.quarantine["key"] for r in results[table]]),
        )

    for file in summary.files:
        assert file.path.suffix == f".{fmt}"
        bronze = to_bronze(
            read_landing_file(file.path),
            source_file=file.path.name,
            ingested_at=datetime(2024, 1, 1, tzinfo=UTC),
            run_id="run",
        )
        assert bronze["_row_number"].to_list() == list(range(file.rows))
        assert bronze["_error"].null_count() == bronze["_raw"].null_count() == file.rows
        spec = TABLES[file.table]
        references = {ref.column: known(ref.table) for ref in spec.references}
        results[file.table].append(to_silver(bronze, spec, KEY, day=file.day, known=references))
    return {
        table: pl.concat([r.silver.drop("_source_file") for r in found], how="diagonal_relaxed")
        for table, found in results.items()
        if found
    }


def test_all_four_formats_yield_the_same_silver_rows(tmp_path: Path) -> None:
    by_format = {fmt: silver_rows(tmp_path / fmt, fmt) for fmt in FORMATS}
    reference = by_format["parquet"]
    assert reference["transactions"].height > 1000
    assert reference.keys() == set(TABLES)
    for fmt, tables in by_format.items():
        for table, frame in tables.items():
            assert frame.equals(reference[table]), (fmt, table)


@pytest.mark.parametrize(
    ("schema", "typed", "expected"),
    [
        (dict.fromkeys(TRANSACTIONS.column_names, pl.String), False, {}),
        (
            {**dict.fromkeys(TRANSACTIONS.column_names, pl.String), "promo_code": pl.String},
            False,
            {"added": ["promo_code"]},
        ),
        (
            {c: pl.String for c in TRANSACTIONS.column_names if c != "device"},
            False,
            {"removed": ["device"]},
        ),
        (
            {("amount_eur" if c == "amount" else c): pl.Float64 for c in TRANSACTIONS.column_names},
            False,
            {"renamed": {"amount": "amount_eur"}},
        ),
        (
            {**dict.fromkeys(TRANSACTIONS.column_names, pl.String), "amount": pl.String},
            True,
            {"retyped": {"amount": "number -> text"}},
        ),
    ],
)
def test_schema_drift_names_each_kind(
    schema: dict[str, pl.DataType], typed: bool, expected: dict[str, object]
) -> None:
    drift = detect_schema_drift(TRANSACTIONS, pl.Schema(schema), typed=typed)
    nothing = {"added": [], "removed": [], "renamed": {}, "retyped": {}}
    assert drift.to_dict() == {**nothing, **expected}
    assert drift.has_drift == bool(expected)
