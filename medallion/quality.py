"""Quality gates as plain functions: each returns whether the data may be used, and why not.

The Dagster layer turns these outcomes into asset checks; the ones that mean "do not use this
data" are blocking there, so nothing downstream runs on a partition that failed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandera.errors
import polars as pl

from medallion.contracts import silver_contract
from medallion.silver import SilverResult
from medallion.sources import SourceTable

SAMPLE_ROWS = 10
SAMPLE_COLUMNS = ("key", "failed_checks", "error", "original", "_source_file")
"""What a quarantine sample shows; originals hold PII only as pseudonyms."""


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def contract(silver: pl.DataFrame, spec: SourceTable) -> CheckOutcome:
    """The silver table matches its pandera contract: types, rules, unique keys, no raw PII."""
    pii_names = {name for c in spec.columns if c.pii for name in (c.name, *c.aliases)}
    raw = [c for c in silver.columns if c in pii_names]
    if raw:  # named, never sampled: the values are what must not leak
        return CheckOutcome(False, f"raw PII columns in silver: {raw}", {"raw_pii_columns": raw})
    try:
        silver_contract(spec).validate(silver, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases.head(SAMPLE_ROWS)
        return CheckOutcome(
            False, f"{len(errors.failure_cases)} contract violations", _sample(cases)
        )
    return CheckOutcome(True, "silver rows match the contract")


def row_accounting(result: SilverResult) -> CheckOutcome:
    """Every bronze row is a silver row, a quarantined row or a removed duplicate."""
    accounted = result.silver.height + result.quarantine.height + result.duplicates_removed
    counts = {
        "bronze_rows": result.bronze_rows,
        "silver_rows": result.silver.height,
        "quarantined_rows": result.quarantine.height,
        "duplicates_removed": result.duplicates_removed,
    }
    passed = accounted == result.bronze_rows
    verdict = "adds up" if passed else f"is off by {result.bronze_rows - accounted}"
    return CheckOutcome(passed, f"bronze = silver + quarantined + duplicates {verdict}", counts)


def too_many(bad: int, rows: int, max_rate: float, min_rows: int) -> bool:
    """Whether ``bad`` of ``rows`` is over a gate's rate, judged fairly for small partitions.

    A rate alone would fail a day of 14 chargebacks over one bad row, so the rate counts only
    from ``min_rows`` bad rows on; a partition in which no row passed fails however small.
    """
    if not rows or bad <= max_rate * rows:
        return False
    return bad >= min_rows or bad == rows


def quarantine_rate(result: SilverResult, max_rate: float, min_rows: int) -> CheckOutcome:
    """Too many rejected rows means the partition as a whole cannot be trusted."""
    quarantined = result.quarantine.height
    rate = quarantined / result.bronze_rows if result.bronze_rows else 0.0
    by_check = (
        result.quarantine.explode("failed_checks")
        .group_by("failed_checks")
        .len()
        .sort("len", descending=True)
    )
    metadata = {
        "quarantine_rate": rate,
        "max_rate": max_rate,
        "min_rows": min_rows,
        "quarantined_rows": quarantined,
        "failed_checks": dict(by_check.iter_rows()),
        **_sample(result.quarantine.select(SAMPLE_COLUMNS)),
    }
    description = (
        f"{rate:.2%} of rows quarantined ({quarantined}; "
        f"fails above {max_rate:.2%} from {min_rows} rows on, or when no row passed)"
    )
    return CheckOutcome(
        not too_many(quarantined, result.bronze_rows, max_rate, min_rows), description, metadata
    )


def files_readable(result: SilverResult) -> CheckOutcome:
    """A file nobody could read hides rows nobody can count: the day is incomplete."""
    unreadable = result.quarantine.filter(pl.col("failed_checks").list.contains("file: unreadable"))
    files = dict(unreadable.select("_source_file", "error").iter_rows())
    return CheckOutcome(
        not files,
        f"unreadable files: {sorted(files)}" if files else "every landed file was read",
        {"unreadable_files": files} if files else {},
    )


def duplicate_rate(result: SilverResult, max_rate: float) -> CheckOutcome:
    rate = result.duplicates_removed / result.bronze_rows if result.bronze_rows else 0.0
    return CheckOutcome(
        rate <= max_rate,
        f"{rate:.2%} of rows were duplicates (limit {max_rate:.2%})",
        {"duplicate_rate": rate, "duplicates_removed": result.duplicates_removed},
    )


def null_rates(silver: pl.DataFrame, spec: SourceTable, max_rate: float) -> CheckOutcome:
    """Optional columns may be null, but not so often that features built on them are empty."""
    rates = {
        name: (silver[name].null_count() / silver.height if silver.height else 0.0)
        for name in silver.columns
        if not name.startswith("_")
    }
    optional = {c.name for c in spec.columns if not c.required}
    too_high = {name: rate for name, rate in rates.items() if name in optional and rate > max_rate}
    return CheckOutcome(
        not too_high,
        f"optional columns over {max_rate:.0%} null: {sorted(too_high)}" if too_high else "ok",
        {"null_rates": rates, "max_rate": max_rate},
    )


def referential_integrity(result: SilverResult, max_rate: float, min_rows: int) -> CheckOutcome:
    """Rows naming an entity that never arrived (quarantined as orphans), per reference.

    A row naming an entity that arrived but sits in quarantine is kept: the fact is valid.
    """
    checks = result.quarantine.select("failed_checks", "key", pl.int_range(pl.len()).alias("row"))
    orphans = checks.explode("failed_checks").filter(
        pl.col("failed_checks").str.contains(": references no known ", literal=True)
    )
    by_column = {
        column: orphans.filter(pl.col("failed_checks").str.starts_with(f"{column}: ")).height
        for column in result.quarantined_references
    }
    total = orphans["row"].n_unique()  # a row orphaned on two references is one row
    rate = total / result.bronze_rows if result.bronze_rows else 0.0
    parts = [
        f"{column}: {n} orphans quarantined, {result.quarantined_references[column]} rows kept "
        "naming a quarantined entity"
        for column, n in by_column.items()
    ]
    return CheckOutcome(
        not too_many(total, result.bronze_rows, max_rate, min_rows),
        "; ".join(parts),
        {
            "orphans": by_column,
            "kept_naming_quarantined": result.quarantined_references,
            "orphan_rate": rate,
            "max_rate": max_rate,
            "min_rows": min_rows,
            **_sample(orphans.select("key", "failed_checks")),
        },
    )


def point_in_time(gold: pl.DataFrame) -> CheckOutcome:
    """No row uses a profile from after its transaction or a label known before it happened."""
    future_profiles = gold.filter(pl.col("customer_profile_valid_from") > pl.col("event_time"))
    early_labels = gold.filter(pl.col("label_known_at") <= pl.col("event_time"))
    bad = future_profiles.height + early_labels.height
    return CheckOutcome(
        bad == 0,
        f"{future_profiles.height} rows use a future profile, "
        f"{early_labels.height} rows have a label known before the transaction",
        {"rows": bad, **_sample(pl.concat([future_profiles, early_labels]))},
    )


def profile_match_rate(gold: pl.DataFrame, min_rate: float) -> CheckOutcome:
    """Transactions whose customer had no profile yet point at a gap in customer ingestion."""
    rate = (
        1 - gold["customer_profile_valid_from"].null_count() / gold.height if gold.height else 1.0
    )
    return CheckOutcome(
        rate >= min_rate,
        f"{rate:.3%} of transactions found the customer's profile as of the transaction",
        {"match_rate": rate},
    )


def _sample(frame: pl.DataFrame) -> dict[str, Any]:
    return {"sample": frame.head(SAMPLE_ROWS).to_dicts()} if frame.height else {}
