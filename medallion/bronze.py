"""A landing day to bronze: every file's rows as received, and what a person checks about them.

Bronze is the raw zone: values as received, raw PII included. A file that could not be read is
one row with the reader's error; a broken line is one row with its text and error. Either way
it travels on to silver's quarantine, so every landed file and record is accounted for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import polars as pl

from medallion.landing import LINEAGE_COLUMNS, LandingFile, to_bronze
from medallion.quality import CheckOutcome
from medallion.schema_drift import detect_schema_drift
from medallion.sources import SourceTable

LINEAGE_SCHEMA = {
    "_source_file": pl.String,
    "_source_format": pl.String,
    "_row_number": pl.Int64,
    "_ingested_at": pl.Datetime("us", "UTC"),
    "_run_id": pl.String,
    "_error": pl.String,
    "_raw": pl.String,
}


def bronze_rows(
    spec: SourceTable, files: Mapping[str, LandingFile], *, ingested_at: datetime, run_id: str
) -> pl.DataFrame:
    """The day's rows of every file (keyed by its lineage name) as text, with lineage columns.

    A day without files still has every contract column, so its partition reads like the others.
    """
    empty = pl.DataFrame(schema=dict.fromkeys(spec.column_names, pl.String) | LINEAGE_SCHEMA)
    frames = [
        to_bronze(f, source_file=name, ingested_at=ingested_at, run_id=run_id)
        for name, f in files.items()
    ]
    return pl.concat([empty, *frames], how="diagonal_relaxed")


def unsafe_columns(spec: SourceTable, frame: pl.DataFrame) -> list[str]:
    """What must be pseudonymized before bronze rows are shown: PII, renamed PII, raw lines."""
    if not spec.pii:
        return []
    business = [c for c in frame.columns if c not in LINEAGE_COLUMNS]
    return [*spec.unsafe_columns(business), "_raw"]


def schema_drift(spec: SourceTable, files: Mapping[str, LandingFile]) -> CheckOutcome:
    """Files whose columns differ from the contract: added, removed, renamed or retyped."""
    drifted = {
        name: drift.to_dict()
        for name, f in files.items()
        if f.error is None
        and (drift := detect_schema_drift(spec, f.schema, typed=f.format != "csv")).has_drift
    }
    return CheckOutcome(
        passed=not drifted,
        description=f"schema drift in {sorted(drifted)}" if drifted else "no schema drift",
        metadata={"drift": drifted} if drifted else {},
    )


def files_outcome(files: Mapping[str, LandingFile]) -> CheckOutcome:
    """Every landed file is ingested or quarantined; which, and how many broken lines."""
    quarantined = {name: f.error for name, f in files.items() if f.error is not None}
    broken = {name: f.rejected.height for name, f in files.items() if f.error is None}
    broken = {name: n for name, n in broken.items() if n}
    ingested = {name: f.frame.height for name, f in files.items() if f.error is None}
    return CheckOutcome(
        passed=not quarantined and not broken,
        description=f"{len(ingested)} files ingested, {len(quarantined)} quarantined, "
        f"{sum(broken.values())} broken lines quarantined",
        metadata={
            "files_ingested": ingested,
            "files_quarantined": quarantined,
            "broken_lines": broken,
        },
    )
