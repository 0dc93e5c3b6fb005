"""Bad landing input never stops the platform, leaks PII or loses a row.

Each test lands a clean first day, spoils the second day's files the way a broken feed would,
ingests it and checks three things: the row accounting still adds up (bronze files = ingested +
quarantined; bronze rows = silver + quarantined + duplicates), the bad input sits in a quarantine
with a reason a person can act on, and the good input went through.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._serdes import serialize_value

from medallion.landing import read_landing_file
from reference_data import GenerationSummary, generate
from resources import Lakehouse, Settings
from tests.conftest import RunDay, days_of, with_config

CONFIG = with_config(
    days=2,
    transactions_per_day=300,
    customers=200,
    merchants=30,
    bad_record_rate=0.0,
    extra_column_day=None,
    renamed_column_day=None,
)
FIRST_DAY, SECOND_DAY = days_of(CONFIG)


@dataclass
class Feed:
    """The landing zone after a clean first day was ingested."""

    settings: Settings
    lakehouse: Lakehouse
    summary: GenerationSummary
    run_day: RunDay

    @property
    def landing(self) -> Path:
        return Path(self.settings.landing_uri)

    def file(self, table: str) -> Path:
        found = self.summary.file(table, date.fromisoformat(SECOND_DAY))
        assert found is not None, table
        return found.path

    def frame(self, table: str) -> pl.DataFrame:
        """The second day's landing rows of ``table``, every value as text."""
        return read_landing_file(self.file(table)).frame.select(pl.all().cast(pl.String))

    def replace(self, table: str, writer: str, frame: pl.DataFrame, **options: object) -> Path:
        """Swap the day's file for ``frame`` written by polars' ``writer`` (e.g. "write_csv")."""
        old = self.file(table)
        new = old.with_suffix("." + writer.removeprefix("write_").replace("ndjson", "jsonl"))
        old.unlink()
        getattr(frame, writer)(new, **options)
        return new

    def run(self) -> dg.ExecuteInProcessResult:
        return self.run_day(SECOND_DAY)

    def table(self, name: str) -> pl.DataFrame:
        return self.lakehouse.scan(name, partitions=[SECOND_DAY]).collect()


@pytest.fixture
def feed(settings: Settings, lakehouse: Lakehouse, run_day: RunDay) -> Feed:
    summary = generate(CONFIG, Path(settings.landing_uri))
    assert run_day(FIRST_DAY).success
    return Feed(settings, lakehouse, summary, run_day)


def evaluation(
    result: dg.ExecuteInProcessResult, asset: str, check: str
) -> dg.AssetCheckEvaluation:
    return next(
        e
        for e in result.get_asset_check_evaluations()
        if (e.asset_key.to_user_string(), e.check_name) == (asset, check)
    )


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(
        str(e.event_specific_data.error)
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    )


def assert_accounted(feed: Feed, result: dg.ExecuteInProcessResult, table: str) -> dict:
    """Files and rows of the day add up; returns the file accounting."""
    files = {
        k: v.value
        for k, v in evaluation(result, f"bronze/{table}", "landing_files").metadata.items()
    }
    landed = {
        f"{table}/{SECOND_DAY}/{p.name}"
        for folder in (
            feed.landing / table / SECOND_DAY,
            feed.landing / "_quarantine" / table / SECOND_DAY,
        )
        if folder.is_dir()
        for p in folder.iterdir()
        if p.suffix in {".csv", ".jsonl", ".parquet", ".avro"}
    }
    assert set(files["files_ingested"]) | set(files["files_quarantined"]) == landed
    assert not set(files["files_ingested"]) & set(files["files_quarantined"])

    rows = evaluation(result, f"silver/{table}", "row_accounting")
    assert rows.passed, rows.description
    counts = {k: v.value for k, v in rows.metadata.items()}
    assert counts["bronze_rows"] == feed.table(f"bronze/{table}").height
    assert counts["quarantined_rows"] == feed.table(f"silver/{table}_quarantine").height
    assert counts["bronze_rows"] == (
        counts["silver_rows"] + counts["quarantined_rows"] + counts["duplicates_removed"]
    )
    return files


def test_a_truncated_parquet_is_quarantined_and_the_good_file_ingested(feed: Feed) -> None:
    rows = feed.frame("transactions")
    good, rest = rows.head(200), rows.slice(200)
    feed.replace("transactions", "write_ndjson", good)
    truncated = feed.file("transactions").with_name("late-batch.parquet")
    rest.write_parquet(truncated)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])

    result = feed.run()

    files = assert_accounted(feed, result, "transactions")
    assert (
        "late-batch.parquet: unreadable parquet"
        in files["files_quarantined"][f"transactions/{SECOND_DAY}/late-batch.parquet"]
    )
    moved = feed.landing / "_quarantine" / "transactions" / SECOND_DAY / "late-batch.parquet"
    assert moved.is_file() and not truncated.exists()
    assert (
        "unreadable parquet"
        in json.loads(moved.with_name(moved.name + ".error.json").read_text())["error"]
    )
    bronze = feed.table("bronze/transactions")
    assert bronze["_error"].is_null().sum() == 200
    # A day missing a whole file is incomplete: silver is not published, nothing downstream runs.
    assert not result.success
    assert "files_readable" in failure_text(result)
    assert "late-batch.parquet" in failure_text(result)
    quarantine = feed.table("silver/transactions_quarantine")
    assert quarantine.filter(pl.col("failed_checks").list.contains("file: unreadable")).height == 1

    # Ingesting the day again still accounts for the quarantined file.
    again = feed.run()
    files = assert_accounted(feed, again, "transactions")
    assert list(files["files_quarantined"]) == [f"transactions/{SECOND_DAY}/late-batch.parquet"]


def test_an_empty_file_is_quarantined(feed: Feed) -> None:
    empty = feed.file("transactions").with_name("nothing.csv")
    empty.write_bytes(b"")
    result = feed.run()
    files = assert_accounted(feed, result, "transactions")
    assert files["files_quarantined"] == {
        f"transactions/{SECOND_DAY}/nothing.csv": "nothing.csv: empty file: 0 bytes"
    }
    assert feed.table("bronze/transactions")["_error"].is_null().sum() == (
        feed.frame("transactions").height
    )
    assert not result.success and "nothing.csv" in failure_text(result)


@pytest.mark.parametrize(
    ("writer", "spoil", "error"),
    [
        ("write_ndjson", lambda line: line[: len(line) // 2], "line 58: invalid JSON"),
        (
            "write_ndjson",
            lambda line: line.replace(b"EUR", b"E\xffR"),
            "line 58: invalid UTF-8 byte 0xff",
        ),
        (
            "write_csv",
            lambda line: line.replace(b"EUR", b"E\xffR"),
            "line 59: invalid UTF-8 byte 0xff",
        ),
        ("write_csv", lambda line: line + b",surplus", "line 59: 9 fields, the header has 8"),
    ],
)
def test_a_broken_line_is_quarantined_and_the_rest_of_its_file_ingested(
    feed: Feed, writer: str, spoil: object, error: str
) -> None:
    rows = feed.frame("transactions")
    path = feed.replace("transactions", writer, rows)
    lines = path.read_bytes().split(b"\n")
    header = 1 if writer == "write_csv" else 0
    lines[57 + header] = spoil(lines[57 + header])  # type: ignore[operator]
    path.write_bytes(b"\n".join(lines))

    result = feed.run()

    assert result.success, failure_text(result)
    assert_accounted(feed, result, "transactions")
    quarantine = feed.table("silver/transactions_quarantine")
    broken = quarantine.filter(pl.col("failed_checks").list.contains("record: unreadable"))
    assert broken.height == 1
    assert broken["error"][0].startswith(f"{path.name} {error}")
    assert broken["_row_number"][0] == 57
    silver = feed.table("silver/transactions")
    assert (
        silver.height
        == rows.height
        - 1
        - evaluation(result, "silver/transactions", "row_accounting")
        .metadata["duplicates_removed"]
        .value
    )


@pytest.mark.parametrize("spoil", ["semicolons", "epoch_longs"])
def test_a_file_in_the_wrong_shape_is_quarantined_whole_and_blocks(feed: Feed, spoil: str) -> None:
    rows = feed.frame("transactions")
    if spoil == "semicolons":
        path = feed.replace("transactions", "write_csv", rows, separator=";")
    else:
        as_long = pl.col("event_time").str.to_datetime().dt.epoch("us")
        path = feed.replace("transactions", "write_avro", rows.with_columns(as_long))

    result = feed.run()

    assert_accounted(feed, result, "transactions")
    assert not result.success
    assert "quarantine_rate" in failure_text(result)
    assert feed.table("silver/transactions_quarantine").height == rows.height
    drift = evaluation(result, "bronze/transactions", "schema_drift")
    assert not drift.passed and path.name in drift.description


def test_implausible_times_and_amounts_are_quarantined_not_dropped(feed: Feed) -> None:
    rows = feed.frame("transactions")
    spoiled = {
        0: ("1900-01-01T00:00:00", None),
        1: ("2200-06-01T00:00:00", None),
        2: (None, "1e-320"),
    }
    ids = rows["transaction_id"].head(3).to_list()
    for i, (time, amount) in spoiled.items():
        rows = rows.with_columns(
            pl.when(pl.int_range(pl.len()) == i)
            .then(pl.lit(time) if time else pl.col("event_time"))
            .otherwise("event_time")
            .alias("event_time"),
            pl.when(pl.int_range(pl.len()) == i)
            .then(pl.lit(amount) if amount else pl.col("amount"))
            .otherwise("amount")
            .alias("amount"),
        )
    feed.replace("transactions", "write_csv", rows)

    result = feed.run()

    assert result.success, failure_text(result)
    assert_accounted(feed, result, "transactions")
    quarantine = feed.table("silver/transactions_quarantine").filter(pl.col("key").is_in(ids))
    reasons = dict(zip(quarantine["key"], quarantine["failed_checks"].to_list(), strict=True))
    assert reasons == {
        ids[0]: ["event_time: outside its landing day (tolerance 0:00:00)"],
        ids[1]: ["event_time: outside its landing day (tolerance 0:00:00)"],
        ids[2]: ["amount: greater_than_or_equal_to(0.01)"],
    }
    gold = feed.table("gold/labeled_transactions")
    start = date.fromisoformat(SECOND_DAY)
    assert gold["event_time"].dt.date().unique().to_list() == [start]
    assert not set(ids) & set(gold["transaction_id"])


def test_conflicting_duplicates_are_quarantined_identical_ones_removed(feed: Feed) -> None:
    rows = feed.frame("transactions")
    first = rows.head(1)
    conflict = first.with_columns(pl.lit("9999.00").alias("amount"), pl.lit("pos").alias("channel"))
    feed.replace("transactions", "write_csv", pl.concat([rows, conflict, rows.slice(1, 1)]))

    result = feed.run()

    assert result.success, failure_text(result)
    files = assert_accounted(feed, result, "transactions")
    assert files
    quarantine = feed.table("silver/transactions_quarantine")
    conflicts = quarantine.filter(
        pl.col("failed_checks").list.contains("transaction_id: conflicting duplicate")
    )
    assert conflicts["key"].to_list() == [first["transaction_id"][0]] * 2
    assert first["transaction_id"][0] not in set(
        feed.table("silver/transactions")["transaction_id"]
    )


def raw_values_found(feed: Feed, instance: dg.DagsterInstance, values: set[str]) -> dict[str, int]:
    """Where raw ``values`` appear: every Delta table but the raw zone, and the event log."""
    lake = Path(feed.settings.lakehouse_uri)
    texts = {}
    for log in (lake / layer for layer in ("silver", "gold", "features")):
        for table in (p for p in log.iterdir() if (p / "_delta_log").is_dir()):
            frame = pl.read_delta(str(table))
            texts[str(table.relative_to(lake))] = frame.write_ndjson()
    for run in instance.get_runs():
        texts[f"event log of run {run.run_id}"] = " ".join(
            serialize_value(e) for e in instance.all_logs(run.run_id)
        )
    return {
        where: sum(v in text for v in values)
        for where, text in texts.items()
        if any(v in text for v in values)
    }


def test_renamed_pii_never_leaves_bronze(feed: Feed, instance: dg.DagsterInstance) -> None:
    customers = feed.frame("customers")
    raw = set(customers["email"].drop_nulls()) | set(customers["card_number"].drop_nulls())
    first_day = read_landing_file(
        feed.summary.file("customers", date.fromisoformat(FIRST_DAY)).path
    ).frame
    raw |= set(first_day["email"].drop_nulls()) | set(first_day["card_number"].drop_nulls())
    feed.replace(
        "customers",
        "write_ndjson",
        customers.rename({"email": "e_mail", "card_number": "pan"}).with_columns(
            pl.col("e_mail").alias("contact")
        ),
    )

    result = feed.run()

    assert not result.success  # every profile lacks its e-mail: the partition is refused
    assert "quarantine_rate" in failure_text(result)
    assert raw_values_found(feed, instance, raw) == {}
    assert feed.table("silver/customers_quarantine").height == customers.height


@pytest.mark.parametrize(("key", "says"), [("", "is empty"), ("short", "is malformed")])
def test_a_bad_key_refuses_before_any_table_is_written(
    settings: Settings, run_day: RunDay, monkeypatch: pytest.MonkeyPatch, key: str, says: str
) -> None:
    generate(CONFIG, Path(settings.landing_uri))
    monkeypatch.setenv("PSEUDONYMIZATION_KEY", key)
    result = run_day(FIRST_DAY)
    assert not result.success
    errors = " ".join(
        str(e.event_specific_data.error)
        for e in result.all_events
        if e.event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE)
        or e.event_type == dg.DagsterEventType.RESOURCE_INIT_FAILURE
    )
    assert f"PSEUDONYMIZATION_KEY {says}" in errors
    assert not Path(settings.lakehouse_uri).exists() or not any(
        Path(settings.lakehouse_uri).rglob("_delta_log")
    )
    assert not result.get_asset_materialization_events()


def test_a_chargeback_of_a_quarantined_transaction_is_kept_an_orphan_is_not(
    settings: Settings, lakehouse: Lakehouse, run_day: RunDay
) -> None:
    summary = generate(CONFIG, Path(settings.landing_uri))
    first = summary.file("transactions", date.fromisoformat(FIRST_DAY)).path
    day_one = read_landing_file(first).frame.select(pl.all().cast(pl.String))
    spoiled = day_one["transaction_id"][5]
    first.unlink()
    day_one.with_columns(
        pl.when(pl.col("transaction_id") == spoiled)
        .then(pl.lit("not-a-timestamp"))
        .otherwise("event_time")
        .alias("event_time")
    ).write_csv(first.with_suffix(".csv"))
    disputes = pl.DataFrame(
        {
            "chargeback_id": ["CB-LATE-1", "CB-LATE-2"],
            "transaction_id": [spoiled, "T-NEVER-SEEN"],
            "reported_at": [f"{SECOND_DAY}T09:00:00", f"{SECOND_DAY}T10:00:00"],
            "reason_code": ["fraud", "fraud"],
            "amount": ["10.00", "20.00"],
        }
    )
    disputes.write_csv(Path(settings.landing_uri) / "chargebacks" / SECOND_DAY / "disputes.csv")

    assert run_day(FIRST_DAY).success
    result = run_day(SECOND_DAY)

    assert result.success, failure_text(result)
    silver = lakehouse.scan("silver/chargebacks", partitions=[SECOND_DAY]).collect()
    assert "CB-LATE-1" in set(silver["chargeback_id"])
    quarantine = lakehouse.scan("silver/chargebacks_quarantine", partitions=[SECOND_DAY]).collect()
    assert quarantine.select("key", "failed_checks").rows() == [
        ("CB-LATE-2", ["transaction_id: references no known transactions"])
    ]
    check = evaluation(result, "silver/chargebacks", "referential_integrity")
    assert check.passed
    assert check.metadata["kept_naming_quarantined"].value == {"transaction_id": 1}
    assert check.metadata["orphans"].value == {"transaction_id": 1}
