"""Bronze: each day's landing files, appended to Delta as received, with lineage columns.

Bronze is the raw zone: values as received, raw PII included (pseudonymized from silver on and
in every preview). A file that cannot be read is moved to the landing quarantine and kept here as
one row with the reader's error; a broken line of a csv or jsonl file is one row with its text
and error. Either way it travels on to silver's quarantine, so every landed file and record is
accounted for, and the good files and lines of the day are ingested.
"""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from factories.conventions import DAILY, DAILY_BY_6AM, OWNERS
from factories.metadata import PREVIEW_ROWS, check_result, table_metadata
from medallion.landing import (
    DELIVERED_MARKER,
    LINEAGE_COLUMNS,
    LandingFile,
    read_landing_file,
    to_bronze,
)
from medallion.pseudonymize import pseudonymize
from medallion.quality import Outcome
from medallion.schema_drift import detect_schema_drift
from medallion.tables import LANDING_TABLES, TableSpec
from resources import Lakehouse, LandingZone, Pseudonymizer

EMPTY_LINEAGE = {
    "_source_file": pl.String,
    "_source_format": pl.String,
    "_row_number": pl.Int64,
    "_ingested_at": pl.Datetime("us", "UTC"),
    "_run_id": pl.String,
    "_error": pl.String,
    "_raw": pl.String,
}


def bronze_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["bronze", table])


def land(landing: LandingZone, table: str, day: str) -> list[LandingFile]:
    """Every file of the day, read from the inbox or known from the landing quarantine.

    An unreadable inbox file is moved to the quarantine now; one quarantined by an earlier run
    still counts (unless delivered again since). Each keeps the path it landed under as lineage.
    """
    if not landing.delivered(table, day):
        raise dg.Failure(
            f"bronze/{table} {day}: nothing has landed in {landing.folder(table, day)}: no data "
            f"file and no {DELIVERED_MARKER} marker, so the day is not delivered yet."
        )
    earlier = landing.quarantined(table, day)
    files = [read_landing_file(path) for path in landing.files(table, day)]
    for file in files:
        if file.error is not None:
            landing.quarantine(file.path, file.error)
    return sorted([*earlier, *files], key=lambda f: f.path.name)


def files_outcome(files: dict[str, LandingFile]) -> Outcome:
    """Every landed file is ingested or quarantined; which, and how many broken lines."""
    quarantined = {name: f.error for name, f in files.items() if f.error is not None}
    broken = {name: f.rejected.height for name, f in files.items() if f.error is None}
    broken = {name: n for name, n in broken.items() if n}
    ingested = {name: f.frame.height for name, f in files.items() if f.error is None}
    return Outcome(
        passed=not quarantined and not broken,
        description=f"{len(ingested)} files ingested, {len(quarantined)} quarantined, "
        f"{sum(broken.values())} broken lines quarantined",
        metadata={
            "files_ingested": ingested,
            "files_quarantined": quarantined,
            "broken_lines": broken,
        },
    )


def build_bronze_asset(spec: TableSpec) -> dg.AssetsDefinition:
    key = bronze_key(spec.name)

    @dg.asset(
        key=key,
        partitions_def=DAILY,
        group_name="bronze",
        owners=OWNERS,
        freshness_policy=DAILY_BY_6AM,
        kinds={"polars", "delta"},
        description=f"{spec.description} Raw landing rows as text, one partition per day.",
        check_specs=[
            dg.AssetCheckSpec(
                "schema_drift",
                asset=key,
                partitions_def=DAILY,
                description="Landing files match the contract: no added, removed, renamed or "
                "retyped columns. Drifted columns are kept in bronze, never dropped.",
            ),
            dg.AssetCheckSpec(
                "landing_files",
                asset=key,
                partitions_def=DAILY,
                description="Every landed file was read whole: none quarantined as unreadable, "
                "no broken line. Lists the files ingested and quarantined.",
            ),
        ],
    )
    def bronze(
        context: dg.AssetExecutionContext,
        lakehouse: Lakehouse,
        landing: LandingZone,
        pseudonymizer: Pseudonymizer,
    ):
        day = context.partition_key
        ingested_at = datetime.now(UTC)
        files = {landing.relative(f.path): f for f in land(landing, spec.name, day)}
        frames = [
            to_bronze(f, source_file=name, ingested_at=ingested_at, run_id=context.run.run_id)
            for name, f in files.items()
        ]
        empty = pl.DataFrame(schema=dict.fromkeys(spec.column_names, pl.String) | EMPTY_LINEAGE)
        frame = pl.concat([empty, *frames], how="diagonal_relaxed")
        commit = lakehouse.write_partition(f"bronze/{spec.name}", frame, day)

        drift = {
            name: detect_schema_drift(spec, f.schema, typed=f.format != "csv")
            for name, f in files.items()
            if f.error is None
        }
        drifted = {name: d.to_dict() for name, d in drift.items() if d.has_drift}
        business = [c for c in frame.columns if c not in LINEAGE_COLUMNS]
        unsafe = (*spec.unsafe_columns(business), "_raw") if spec.pii else ()
        preview = pseudonymize(
            frame.head(PREVIEW_ROWS), unsafe, pseudonymizer.key_bytes, rename=False
        )
        yield dg.MaterializeResult(
            metadata={
                **table_metadata(commit, frame, preview=preview),
                "source_files": list(files),
            }
        )
        outcome = Outcome(
            passed=not drifted,
            description=f"schema drift in {sorted(drifted)}" if drifted else "no schema drift",
            metadata={"drift": drifted} if drifted else {},
        )
        yield check_result("schema_drift", outcome, asset_key=key, blocking=False)
        yield check_result("landing_files", files_outcome(files), asset_key=key, blocking=False)

    return bronze


BRONZE_ASSETS = [build_bronze_asset(spec) for spec in LANDING_TABLES.values()]
