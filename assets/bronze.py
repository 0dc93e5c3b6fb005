"""Bronze: each day's landing files, appended to Delta as received, with lineage columns."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from assets.conventions import DAILY, DAILY_BY_6AM, OWNERS
from assets.metadata import check_result, table_metadata
from medallion.landing import read_landing_file, to_bronze
from medallion.quality import Outcome
from medallion.schema_drift import detect_schema_drift
from medallion.tables import LANDING_TABLES, TableSpec
from resources import Lakehouse, LandingZone

EMPTY_LINEAGE = {
    "_source_file": pl.String,
    "_source_format": pl.String,
    "_row_number": pl.Int64,
    "_ingested_at": pl.Datetime("us", "UTC"),
    "_run_id": pl.String,
}


def bronze_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["bronze", table])


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
                description="Landing files match the contract: no added, removed, renamed or "
                "retyped columns. Drifted columns are kept in bronze, never dropped.",
            )
        ],
    )
    def bronze(context: dg.AssetExecutionContext, lakehouse: Lakehouse, landing: LandingZone):
        day = context.partition_key
        ingested_at = datetime.now(UTC)
        files = [read_landing_file(path) for path in landing.files(spec.name, day)]
        frames = [
            to_bronze(
                f,
                source_file=landing.relative(f.path),
                ingested_at=ingested_at,
                run_id=context.run.run_id,
            )
            for f in files
        ]
        empty = pl.DataFrame(schema=dict.fromkeys(spec.column_names, pl.String) | EMPTY_LINEAGE)
        frame = pl.concat([empty, *frames], how="diagonal_relaxed")
        commit = lakehouse.write_partition(f"bronze/{spec.name}", frame, day)

        drift = {
            landing.relative(f.path): detect_schema_drift(spec, f.schema, typed=f.format != "csv")
            for f in files
        }
        drifted = {name: d.to_dict() for name, d in drift.items() if d.has_drift}
        yield dg.MaterializeResult(
            metadata={
                **table_metadata(commit, frame, hidden=spec.pii),
                "source_files": [landing.relative(f.path) for f in files],
            }
        )
        outcome = Outcome(
            passed=not drifted,
            description=f"schema drift in {sorted(drifted)}" if drifted else "no schema drift",
            metadata={"drift": drifted} if drifted else {},
        )
        yield check_result("schema_drift", outcome, asset_key=key, blocking=False)

    return bronze


BRONZE_ASSETS = [build_bronze_asset(spec) for spec in LANDING_TABLES.values()]
