"""The quality gates on hand-built partitions: what passes, what fails, and what a person reads."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from medallion import quality
from medallion.silver import QUARANTINE_SCHEMA, KnownIds, SilverResult, to_silver
from medallion.sources import Column, Reference, SourceTable

T0 = datetime(2024, 3, 1, 10)
ORPHAN_CUSTOMER = "customer_id: references no known customers"
ORPHAN_MERCHANT = "merchant_id: references no known merchants"

PROFILES = SourceTable(
    name="customers",
    primary_key="customer_id",
    event_time="updated_at",
    version_column="updated_at",
    columns=(
        Column(name="customer_id", dtype=pl.String(), required=True, pii=False),
        Column(name="email", dtype=pl.String(), required=True, pii=True),
        Column(name="segment", dtype=pl.String(), required=False, pii=False),
        Column(name="updated_at", dtype=pl.Datetime("us"), required=True, pii=False),
    ),
)

PAYMENTS = SourceTable(
    name="transactions",
    primary_key="transaction_id",
    event_time="event_time",
    references=(
        Reference(column="customer_id", table="customers"),
        Reference(column="merchant_id", table="merchants"),
    ),
    columns=(
        Column(name="transaction_id", dtype=pl.String(), required=True, pii=False),
        Column(name="customer_id", dtype=pl.String(), required=True, pii=False),
        Column(name="merchant_id", dtype=pl.String(), required=True, pii=False),
        Column(name="device", dtype=pl.String(), required=False, pii=False),
        Column(name="event_time", dtype=pl.Datetime("us"), required=True, pii=False),
    ),
)


def profiles(n: int = 3) -> pl.DataFrame:
    """Silver customer profiles that keep the contract: two versions of C0, pseudonymized e-mail."""
    return pl.DataFrame(
        {
            "customer_id": ["C0", *(f"C{i}" for i in range(n - 1))],
            "email_pseudonym": [f"{i:064x}" for i in range(n)],
            "segment": ["retail", None, *["premium"] * (n - 2)],
            "updated_at": [T0 + timedelta(days=1), *[T0] * (n - 1)],
            "_source_file": ["customers.csv"] * n,
        }
    )


def quarantine(*failed_checks: list[str], error: str | None = None) -> pl.DataFrame:
    """Quarantined rows, one per list of failed checks, shaped as silver writes them."""
    n = len(failed_checks)
    return pl.DataFrame(
        {
            "source_table": ["transactions"] * n,
            "key": [f"T{i}" for i in range(n)],
            "failed_checks": list(failed_checks),
            "error": [error] * n,
            "original": [f'{{"transaction_id": "T{i}"}}' for i in range(n)],
            "_source_file": ["day.csv"] * n,
            "_row_number": list(range(n)),
            "_ingested_at": [datetime(2024, 3, 2, tzinfo=UTC)] * n,
            "_run_id": ["run"] * n,
        },
        schema=QUARANTINE_SCHEMA,
    )


def partition(
    bronze_rows: int,
    *,
    silver_rows: int | None = None,
    quarantined: pl.DataFrame | None = None,
    duplicates: int = 0,
    references: dict[str, int] | None = None,
) -> SilverResult:
    """A cleaned partition; silver holds whatever neither quarantine nor duplicates took."""
    quarantined = quarantine() if quarantined is None else quarantined
    if silver_rows is None:
        silver_rows = bronze_rows - quarantined.height - duplicates
    return SilverResult(
        silver=pl.DataFrame({"transaction_id": [f"S{i}" for i in range(silver_rows)]}),
        quarantine=quarantined,
        bronze_rows=bronze_rows,
        duplicates_removed=duplicates,
        quarantined_references=references or {},
    )


# contract


def test_contract_passes_silver_rows_with_versions_and_pseudonyms() -> None:
    outcome = quality.contract(profiles(), PROFILES)
    assert outcome.passed, outcome.metadata
    assert outcome.metadata == {}


@pytest.mark.parametrize(
    ("broken", "column", "check"),
    [
        (  # every row the same customer and version
            [pl.lit("C0").alias("customer_id"), pl.lit(T0).alias("updated_at")],
            "silver_customers",
            "uniqueness",
        ),
        ([pl.lit("ada@example.com").alias("email_pseudonym")], "email_pseudonym", "str_matches"),
        ([pl.col("updated_at").cast(pl.String)], "updated_at", "dtype"),
    ],
    ids=["duplicate-version", "unhashed-pii", "wrong-type"],
)
def test_contract_names_the_column_and_rule_broken(
    broken: list[pl.Expr], column: str, check: str
) -> None:
    outcome = quality.contract(profiles().with_columns(broken), PROFILES)
    assert not outcome.passed
    assert any(
        case["column"] == column and check in case["check"] for case in outcome.metadata["sample"]
    ), outcome.metadata


def test_contract_fails_a_null_required_value_but_not_a_null_optional_one() -> None:
    optional_null = profiles().with_columns(pl.lit(None, pl.String).alias("segment"))
    assert quality.contract(optional_null, PROFILES).passed
    required_null = profiles().with_columns(pl.Series("customer_id", ["C0", "C0", None]))
    outcome = quality.contract(required_null, PROFILES)
    assert not outcome.passed
    assert {(c["column"], c["check"]) for c in outcome.metadata["sample"]} == {
        ("customer_id", "not_nullable")
    }


def test_contract_fails_raw_pii_instead_of_its_pseudonym() -> None:
    raw = profiles().rename({"email_pseudonym": "email"})
    outcome = quality.contract(raw, PROFILES)
    assert not outcome.passed
    assert outcome.metadata == {"raw_pii_columns": ["email"]}, "named, never sampled"


def test_contract_fails_raw_pii_next_to_its_pseudonym() -> None:
    """The contract promises "no raw PII": a raw e-mail column must not pass because a
    pseudonym column sits beside it."""
    leaked = profiles().with_columns(pl.lit("ada@example.com").alias("email"))
    outcome = quality.contract(leaked, PROFILES)
    assert not outcome.passed
    assert "ada@example.com" not in str(outcome)


def test_contract_counts_every_violation_but_samples_a_few() -> None:
    many = pl.concat([profiles()] * 5).with_columns(
        pl.lit("not-a-hash").alias("email_pseudonym"),
        pl.int_range(pl.len()).cast(pl.String).alias("customer_id"),
    )
    outcome = quality.contract(many, PROFILES)
    assert not outcome.passed
    assert outcome.description == f"{many.height} contract violations"
    assert len(outcome.metadata["sample"]) == quality.SAMPLE_ROWS < many.height


# row_accounting


def test_row_accounting_adds_up_and_shows_the_counts() -> None:
    result = partition(10, quarantined=quarantine(["x: y"], ["x: y"]), duplicates=3)
    outcome = quality.row_accounting(result)
    assert outcome.passed
    assert outcome.metadata == {
        "bronze_rows": 10,
        "silver_rows": 5,
        "quarantined_rows": 2,
        "duplicates_removed": 3,
    }
    counts = outcome.metadata
    assert counts["bronze_rows"] == sum(v for k, v in counts.items() if k != "bronze_rows")


@pytest.mark.parametrize(("silver_rows", "off_by"), [(4, 1), (6, -1)])
def test_row_accounting_fails_a_lost_or_invented_row(silver_rows: int, off_by: int) -> None:
    result = partition(10, silver_rows=silver_rows, quarantined=quarantine(["x: y"]), duplicates=4)
    outcome = quality.row_accounting(result)
    assert not outcome.passed
    assert outcome.description.endswith(f"is off by {off_by}")


def test_row_accounting_holds_for_a_real_silver_run() -> None:
    result = silver_day(
        {
            "transaction_id": ["T1", "T1", "T2", "T3", None],
            "customer_id": ["C1"] * 5,
            "merchant_id": ["M1", "M1", "M1", "M_X", "M1"],
            "device": [None] * 5,
            "event_time": ["2024-03-01T10:00:00"] * 4 + ["not a time"],
        }
    )
    outcome = quality.row_accounting(result)
    assert outcome.passed
    assert outcome.metadata == {
        "bronze_rows": 5,
        "silver_rows": 2,
        "quarantined_rows": 2,
        "duplicates_removed": 1,
    }


# quarantine_rate (and too_many, the rule it shares with referential_integrity)


@pytest.mark.parametrize(
    ("bronze_rows", "quarantined", "passed"),
    [
        (100, 5, True),  # exactly at the rate
        (100, 6, False),  # over the rate, from min_rows on
        (20, 4, True),  # over the rate but fewer than min_rows: noise, not a broken feed
        (20, 5, False),  # over the rate at min_rows
        (3, 3, False),  # no row passed: fails however small
        (1, 1, False),
        (3, 0, True),
        (0, 0, True),  # an empty day
    ],
)
def test_quarantine_rate_edges(bronze_rows: int, quarantined: int, passed: bool) -> None:
    result = partition(bronze_rows, quarantined=quarantine(*[["amount: too big"]] * quarantined))
    outcome = quality.quarantine_rate(result, max_rate=0.05, min_rows=5)
    assert outcome.passed is passed
    assert outcome.metadata["quarantined_rows"] == quarantined
    expected_rate = quarantined / bronze_rows if bronze_rows else 0.0
    assert outcome.metadata["quarantine_rate"] == pytest.approx(expected_rate)


def test_quarantine_rate_counts_rows_per_failed_check_and_samples_without_lineage() -> None:
    rows = [["amount: too big"]] * 11 + [["amount: too big", "channel: isin"], ["channel: isin"]]
    outcome = quality.quarantine_rate(
        partition(1000, quarantined=quarantine(*rows)), max_rate=0.05, min_rows=5
    )
    assert outcome.passed
    assert outcome.metadata["quarantined_rows"] == 13
    assert outcome.metadata["failed_checks"] == {"amount: too big": 12, "channel: isin": 2}
    assert outcome.description.startswith("1.30% of rows quarantined (13;")
    sample = outcome.metadata["sample"]
    assert len(sample) == quality.SAMPLE_ROWS
    assert set(sample[0]) == set(quality.SAMPLE_COLUMNS)


def test_quarantine_rate_of_a_clean_day_has_no_sample() -> None:
    outcome = quality.quarantine_rate(partition(10), max_rate=0.05, min_rows=5)
    assert outcome.passed
    assert outcome.metadata["failed_checks"] == {}
    assert "sample" not in outcome.metadata


# files_readable


def test_every_file_read_passes_and_an_unreadable_record_is_no_unreadable_file() -> None:
    result = partition(5, quarantined=quarantine(["record: unreadable"], error="bad quote"))
    outcome = quality.files_readable(result)
    assert outcome.passed
    assert outcome.metadata == {}


def test_an_unreadable_file_fails_with_its_name_and_error() -> None:
    broken = quarantine(["file: unreadable"], error="not a parquet file").with_columns(
        pl.lit("day_2.parquet").alias("_source_file")
    )
    result = partition(5, quarantined=pl.concat([quarantine(["amount: too big"]), broken]))
    outcome = quality.files_readable(result)
    assert not outcome.passed
    assert outcome.metadata == {"unreadable_files": {"day_2.parquet": "not a parquet file"}}
    assert "day_2.parquet" in outcome.description


# duplicate_rate


@pytest.mark.parametrize(
    ("bronze_rows", "duplicates", "passed"),
    [(100, 5, True), (100, 6, False), (0, 0, True), (4, 0, True)],
)
def test_duplicate_rate_edges(bronze_rows: int, duplicates: int, passed: bool) -> None:
    outcome = quality.duplicate_rate(partition(bronze_rows, duplicates=duplicates), max_rate=0.05)
    assert outcome.passed is passed
    assert outcome.metadata["duplicates_removed"] == duplicates
    expected_rate = duplicates / bronze_rows if bronze_rows else 0.0
    assert outcome.metadata["duplicate_rate"] == pytest.approx(expected_rate)


# null_rates


def payments(devices: list[str | None]) -> pl.DataFrame:
    n = len(devices)
    return pl.DataFrame(
        {
            "transaction_id": [f"T{i}" for i in range(n)],
            "customer_id": [None, *["C1"] * (n - 1)][:n],  # required: the contract's job
            "merchant_id": ["M1"] * n,
            "device": pl.Series(devices, dtype=pl.String),
            "event_time": [T0] * n,
            "_source_file": pl.Series([None] * n, dtype=pl.String),  # lineage is not judged
        }
    )


def test_optional_columns_may_be_null_up_to_the_rate() -> None:
    outcome = quality.null_rates(payments([None, "mobile", "mobile", "mobile"]), PAYMENTS, 0.25)
    assert outcome.passed
    assert outcome.metadata["null_rates"] == {
        "transaction_id": 0.0,
        "customer_id": 0.25,
        "merchant_id": 0.0,
        "device": 0.25,
        "event_time": 0.0,
    }


def test_an_optional_column_null_too_often_fails_by_name() -> None:
    outcome = quality.null_rates(payments([None, None, "mobile", "mobile"]), PAYMENTS, 0.25)
    assert not outcome.passed
    assert "['device']" in outcome.description
    assert outcome.metadata["null_rates"]["device"] == 0.5


def test_null_rates_of_an_empty_day_pass() -> None:
    assert quality.null_rates(payments([]), PAYMENTS, 0.25).passed


# referential_integrity


def test_referential_integrity_counts_orphans_per_reference() -> None:
    rows = [[ORPHAN_CUSTOMER], [ORPHAN_MERCHANT], [ORPHAN_MERCHANT], ["device: isin"]]
    result = partition(
        1000, quarantined=quarantine(*rows), references={"customer_id": 2, "merchant_id": 0}
    )
    outcome = quality.referential_integrity(result, max_rate=0.01, min_rows=5)
    assert outcome.passed
    assert outcome.metadata["orphans"] == {"customer_id": 1, "merchant_id": 2}
    assert outcome.metadata["kept_naming_quarantined"] == {"customer_id": 2, "merchant_id": 0}
    assert outcome.metadata["orphan_rate"] == pytest.approx(3 / 1000)
    assert [s["key"] for s in outcome.metadata["sample"]] == ["T0", "T1", "T2"]
    assert "customer_id: 1 orphans quarantined, 2 rows kept" in outcome.description
    assert "merchant_id: 2 orphans quarantined, 0 rows kept" in outcome.description


@pytest.mark.parametrize(
    ("bronze_rows", "orphans", "passed"),
    [(500, 5, True), (400, 5, False), (100, 4, True), (2, 2, False), (10, 0, True)],
)
def test_referential_integrity_edges(bronze_rows: int, orphans: int, passed: bool) -> None:
    result = partition(
        bronze_rows,
        quarantined=quarantine(*[[ORPHAN_MERCHANT]] * orphans),
        references={"customer_id": 0, "merchant_id": 0},
    )
    outcome = quality.referential_integrity(result, max_rate=0.01, min_rows=5)
    assert outcome.passed is passed


def ids(*accepted: str) -> KnownIds:
    return KnownIds(pl.Series(accepted, dtype=pl.String), pl.Series([], dtype=pl.String))


def silver_day(columns: dict[str, list]) -> SilverResult:
    """``to_silver`` on one csv day of payments, with customer C1 and merchant M1 known."""
    bronze = pl.DataFrame(columns).with_columns(
        pl.lit("day.csv").alias("_source_file"),
        pl.lit("csv").alias("_source_format"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_row_number"),
        pl.lit(datetime(2024, 3, 2, tzinfo=UTC)).alias("_ingested_at"),
        pl.lit("run").alias("_run_id"),
    )
    known = {"customer_id": ids("C1"), "merchant_id": ids("M1")}
    return to_silver(bronze, PAYMENTS, b"key", day=date(2024, 3, 1), known=known)


def test_a_row_orphaned_on_two_references_counts_once_against_the_rate() -> None:
    """4 of 10 rows name neither a known customer nor a known merchant: fewer than min_rows
    (5) orphaned rows pass, and 40% of the rows are orphans, not 80%."""
    orphaned = [("C_X", "M_X")] * 4
    rows = [("C1", "M1")] * 6 + orphaned
    result = silver_day(
        {
            "transaction_id": [f"T{i}" for i in range(len(rows))],
            "customer_id": [c for c, _ in rows],
            "merchant_id": [m for _, m in rows],
            "device": ["mobile"] * len(rows),
            "event_time": ["2024-03-01T10:00:00"] * len(rows),
        }
    )
    assert result.quarantine.height == 4

    outcome = quality.referential_integrity(result, max_rate=0.01, min_rows=5)

    assert outcome.metadata["orphans"] == {"customer_id": 4, "merchant_id": 4}
    assert outcome.passed, outcome.metadata
    assert outcome.metadata["orphan_rate"] == pytest.approx(0.4)


# point_in_time


def gold(
    event: list[datetime],
    profile_from: list[datetime | None],
    known_at: list[datetime | None],
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "transaction_id": [f"T{i}" for i in range(len(event))],
            "event_time": event,
            "customer_profile_valid_from": pl.Series(profile_from, dtype=pl.Datetime("us")),
            "label_known_at": pl.Series(known_at, dtype=pl.Datetime("us")),
        }
    )


def test_point_in_time_passes_past_profiles_later_labels_and_nulls() -> None:
    rows = gold(
        [T0, T0, T0],
        [T0, T0 - timedelta(days=3), None],
        [T0 + timedelta(microseconds=1), None, T0 + timedelta(days=9)],
    )
    outcome = quality.point_in_time(rows)
    assert outcome.passed
    assert outcome.metadata == {"rows": 0}


def test_point_in_time_fails_future_profiles_and_labels_known_by_the_event() -> None:
    rows = gold(
        [T0, T0, T0, T0],
        [T0 + timedelta(microseconds=1), T0, T0, T0],
        [None, T0, T0 - timedelta(days=1), T0 + timedelta(days=1)],
    )
    outcome = quality.point_in_time(rows)
    assert not outcome.passed
    assert re.findall(r"\d+", outcome.description) == ["1", "2"]  # future profiles, early labels
    assert outcome.metadata["rows"] == 3
    assert sorted(s["transaction_id"] for s in outcome.metadata["sample"]) == ["T0", "T1", "T2"]


# profile_match_rate


@pytest.mark.parametrize(("missing", "passed"), [(0, True), (1, True), (2, False)])
def test_profile_match_rate_edges(missing: int, passed: bool) -> None:
    rows = gold([T0] * 100, [None] * missing + [T0] * (100 - missing), [None] * 100)
    outcome = quality.profile_match_rate(rows, min_rate=0.99)
    assert outcome.passed is passed
    assert outcome.metadata["match_rate"] == pytest.approx(1 - missing / 100)


def test_profile_match_rate_of_an_empty_day_passes() -> None:
    outcome = quality.profile_match_rate(gold([], [], []), min_rate=0.99)
    assert outcome.passed
    assert outcome.metadata["match_rate"] == 1.0
