"""Turns each source table declaration into its bronze asset and its silver multi-asset.

Bronze appends the day's landing files as received. Silver types, validates, deduplicates and
pseudonymizes them into ``silver/<table>`` and puts every rejected row, with the checks it
failed, into ``silver/<table>_quarantine``. The quality gates run on the rows in memory: a day
failing a blocking gate is not published (its quarantine is, so a person sees why), and nothing
downstream is built on it, in this run or any later one.
"""

from collections.abc import Mapping
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl
from dagster_pandera import pandera_schema_to_dagster_type

from factories.checks import check_result, publish
from factories.policies import DAILY_BY_6AM, OVERDUE, day_mapping
from factories.readiness import require_ready_inputs
from medallion import bronze as bronze_engine
from medallion import quality
from medallion.contracts import silver_contract
from medallion.derived import HISTORY
from medallion.pseudonymize import pseudonymize
from medallion.silver import SilverResult, known_ids, named, to_silver
from medallion.sources import SourceTable
from resources import LandingZone, Pseudonymizer
from resources.lakehouse_io import RAW_PII, asset_key
from resources.table_metadata import PREVIEW_ROWS, frame_value

MAX_QUARANTINE_RATE = 0.05
MAX_ORPHAN_RATE = 0.01
MIN_FAILING_ROWS = 5
"""A rate gate fails only from this many rows on: one bad row of 14 is noise, not a broken feed."""
MAX_DUPLICATE_RATE = 0.05
MAX_OPTIONAL_NULL_RATE = 0.25

SILVER_CHECKS: dict[str, tuple[str, bool]] = {
    "contract": ("Silver rows match the pandera contract (types, rules, unique keys).", True),
    "row_accounting": ("bronze rows = silver + quarantined + removed duplicates.", True),
    "quarantine_rate": (
        f"At most {MAX_QUARANTINE_RATE:.0%} of rows quarantined, or fewer than "
        f"{MIN_FAILING_ROWS} rows.",
        True,
    ),
    "files_readable": (
        "Every landed file could be read; an unreadable file leaves the day incomplete.",
        True,
    ),
    "duplicate_rate": (f"At most {MAX_DUPLICATE_RATE:.0%} of rows are duplicates.", False),
    "null_rates": (f"Optional columns at most {MAX_OPTIONAL_NULL_RATE:.0%} null.", False),
}
REFERENTIAL_CHECK = (
    f"At most {MAX_ORPHAN_RATE:.0%} of rows (or fewer than {MIN_FAILING_ROWS}) name an entity "
    "that never arrived; those are quarantined, rows naming a quarantined entity are kept.",
    True,
)
BRONZE_CHECKS = {
    "schema_drift": "Landing files match the contract: no added, removed, renamed or retyped "
    "columns. Drifted columns are kept in bronze, never dropped.",
    "landing_files": "Every landed file was read whole: none quarantined as unreadable, no "
    "broken line. Lists the files ingested and quarantined.",
}


def bronze_key(table: str) -> dg.AssetKey:
    return asset_key(f"bronze/{table}")


def silver_key(table: str) -> dg.AssetKey:
    return asset_key(f"silver/{table}")


def quarantine_key(table: str) -> dg.AssetKey:
    return asset_key(f"silver/{table}_quarantine")


def source_assets(
    sources: Mapping[str, SourceTable], daily: dg.DailyPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """Bronze and silver of every source table; ``sources`` resolves their references."""
    return [
        asset
        for spec in sources.values()
        for asset in (bronze_asset(spec, daily), silver_assets(spec, sources, daily))
    ]


def bronze_asset(spec: SourceTable, daily: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    key = bronze_key(spec.name)

    @dg.asset(
        key=key,
        partitions_def=daily,
        group_name="bronze",
        owners=[spec.owner],
        freshness_policy=DAILY_BY_6AM,
        automation_condition=OVERDUE,
        kinds={"polars", "delta"},
        description=f"{spec.description} Raw landing rows as text, one partition per day.",
        metadata={RAW_PII: bool(spec.pii)},
        check_specs=[
            dg.AssetCheckSpec(name, asset=key, partitions_def=daily, description=text)
            for name, text in BRONZE_CHECKS.items()
        ],
    )
    def bronze(
        context: dg.AssetExecutionContext, landing: LandingZone, pseudonymizer: Pseudonymizer
    ):
        files = {
            landing.relative(f.path): f for f in landing.land(spec.name, context.partition_key)
        }
        rows = bronze_engine.bronze_rows(
            spec, files, ingested_at=datetime.now(UTC), run_id=context.run.run_id
        )
        metadata: dict[str, object] = {"source_files": list(files)}
        if spec.pii:  # the IO manager shows no raw rows: show them pseudonymized
            unsafe = bronze_engine.unsafe_columns(spec, rows)
            shown = pseudonymize(
                rows.head(PREVIEW_ROWS), unsafe, pseudonymizer.key_bytes, rename=False
            )
            metadata["preview"] = frame_value(shown)
        yield dg.Output(rows, metadata=metadata)
        for name, outcome in (
            ("schema_drift", bronze_engine.schema_drift(spec, files)),
            ("landing_files", bronze_engine.files_outcome(files)),
        ):
            yield check_result(name, outcome, asset_key=key, blocking=False)

    return bronze


def _silver_checks(spec: SourceTable) -> dict[str, tuple[str, bool]]:
    if not spec.references:
        return SILVER_CHECKS
    return {**SILVER_CHECKS, "referential_integrity": REFERENTIAL_CHECK}


def _outcomes(spec: SourceTable, result: SilverResult) -> dict[str, quality.CheckOutcome]:
    outcomes = {
        "contract": quality.contract(result.silver, spec),
        "row_accounting": quality.row_accounting(result),
        "quarantine_rate": quality.quarantine_rate(result, MAX_QUARANTINE_RATE, MIN_FAILING_ROWS),
        "files_readable": quality.files_readable(result),
        "duplicate_rate": quality.duplicate_rate(result, MAX_DUPLICATE_RATE),
        "null_rates": quality.null_rates(result.silver, spec, MAX_OPTIONAL_NULL_RATE),
    }
    if spec.references:
        outcomes["referential_integrity"] = quality.referential_integrity(
            result, MAX_ORPHAN_RATE, MIN_FAILING_ROWS
        )
    return outcomes


def silver_assets(
    spec: SourceTable, sources: Mapping[str, SourceTable], daily: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    """``silver/<table>`` and its quarantine, from bronze and every table it references."""
    key, q_key = silver_key(spec.name), quarantine_key(spec.name)
    contract_type = pandera_schema_to_dagster_type(silver_contract(spec))
    referenced = sorted({ref.table for ref in spec.references})
    ins = {"bronze": dg.AssetIn(bronze_key(spec.name))} | {
        input_name: dg.AssetIn(table_key, partition_mapping=day_mapping(HISTORY))
        for table in referenced
        for input_name, table_key in (
            (table, silver_key(table)),
            (f"{table}_quarantine", quarantine_key(table)),
        )
    }
    common = {
        "group_name": "silver",
        "automation_condition": OVERDUE,
        "owners": [spec.owner],
        "kinds": {"polars", "delta", "pandera"},
    }
    checks = _silver_checks(spec)
    ins_keys = [i.key for i in ins.values()]

    @dg.multi_asset(
        name=f"silver_{spec.name}",
        partitions_def=daily,
        ins=ins,
        outs={
            key.to_python_identifier(): dg.AssetOut(
                key=key,
                description=f"{spec.description} Typed, validated, deduplicated; PII only as "
                "keyed pseudonyms.",
                metadata={"dagster/column_schema": contract_type.metadata["schema"].schema},
                **common,
            ),
            q_key.to_python_identifier(): dg.AssetOut(
                key=q_key,
                description=f"Rows of bronze/{spec.name} that failed parsing, the contract, the "
                "landing day, a reference or a conflicting duplicate, with the failed checks and "
                "the original values (PII pseudonymized); unreadable records and files with the "
                "reader's error.",
                **common,
            ),
        },
        internal_asset_deps={
            key.to_python_identifier(): set(ins_keys),
            q_key.to_python_identifier(): {bronze_key(spec.name)},
        },
        check_specs=[
            dg.AssetCheckSpec(
                check, asset=key, description=text, blocking=blocking, partitions_def=daily
            )
            for check, (text, blocking) in checks.items()
        ],
    )
    def silver(
        context: dg.AssetExecutionContext,
        pseudonymizer: Pseudonymizer,
        bronze: pl.LazyFrame,
        **references: pl.LazyFrame,
    ):
        require_ready_inputs(context)
        rows = bronze.collect()
        result = to_silver(
            rows,
            spec,
            pseudonymizer.key_bytes,
            day=date.fromisoformat(context.partition_key),
            known={
                ref.column: known_ids(
                    references[ref.table],
                    references[f"{ref.table}_quarantine"],
                    key=sources[ref.table].primary_key,
                    among=named(rows, spec, ref.column),
                )
                for ref in spec.references
            },
        )
        yield dg.Output(result.quarantine, output_name=q_key.to_python_identifier())
        results = [
            check_result(check, outcome, asset_key=key, blocking=checks[check][1])
            for check, outcome in _outcomes(spec, result).items()
        ]
        yield from publish(
            results,
            lambda: [
                dg.Output(
                    result.silver,
                    output_name=key.to_python_identifier(),
                    metadata=quality.row_accounting(result).metadata,
                )
            ],
        )

    return silver
