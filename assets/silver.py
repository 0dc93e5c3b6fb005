"""Silver: typed, validated, deduplicated, pseudonymized tables plus their quarantines.

Each table is one multi-asset writing two Delta tables for the day: ``silver/<table>`` and
``silver/<table>_quarantine`` (rejected rows with the checks they failed and their original
values). The quality gates run on the rows before they are written: a partition failing a
blocking one is not published (its quarantine is, so a person sees why), and nothing downstream
is built on it, in this run or any later one.
"""

from datetime import date

import dagster as dg
import polars as pl
from dagster_pandera import pandera_schema_to_dagster_type

from assets.bronze import bronze_key
from factories.conventions import DAILY, EVERY_EARLIER_DAY, OWNERS
from factories.metadata import check_result, publish, table_metadata
from factories.readiness import require_ready_inputs
from medallion import quality
from medallion.contracts import silver_contract
from medallion.silver import KnownIds, SilverResult, named, to_silver
from medallion.tables import LANDING_TABLES, TableSpec
from resources import Lakehouse, Pseudonymizer
from resources.lakehouse import PARTITION_COLUMN

MAX_QUARANTINE_RATE = 0.05
MAX_ORPHAN_RATE = 0.01
MIN_FAILING_ROWS = 5
"""A rate gate fails only from this many rows on: one bad row of 14 is noise, not a broken feed."""
MAX_DUPLICATE_RATE = 0.05
MAX_OPTIONAL_NULL_RATE = 0.25

CHECKS: dict[str, tuple[str, bool]] = {
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


def silver_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", table])


def quarantine_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", f"{table}_quarantine"])


def _checks(spec: TableSpec) -> dict[str, tuple[str, bool]]:
    checks = dict(CHECKS)
    if spec.references:
        checks["referential_integrity"] = REFERENTIAL_CHECK
    return checks


def _outcomes(spec: TableSpec, result: SilverResult) -> dict[str, quality.Outcome]:
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


def known_ids(lakehouse: Lakehouse, table: str, day: str, among: pl.Series) -> KnownIds:
    """The ids of ``among`` that silver ``table`` knows by this day, accepted or quarantined.

    Asking only for the ids a day names keeps a history of millions out of memory.
    """
    key = LANDING_TABLES[table].primary_key
    wanted = among.drop_nulls().unique().implode()

    def ids(name: str, column: str) -> pl.Series:
        frame = lakehouse.scan_or_empty(name, pl.Schema({column: pl.String}))
        if column not in frame.collect_schema():  # a quarantine written before it kept keys
            return pl.Series(column, [], pl.String)
        if PARTITION_COLUMN in frame.collect_schema():
            frame = frame.filter(pl.col(PARTITION_COLUMN) <= day)
        known = frame.select(column).filter(pl.col(column).is_in(wanted))
        return known.unique().collect().to_series()

    return KnownIds(
        accepted=ids(f"silver/{table}", key), quarantined=ids(f"silver/{table}_quarantine", "key")
    )


def build_silver_assets(spec: TableSpec) -> dg.AssetsDefinition:
    name = spec.name
    key, q_key = silver_key(name), quarantine_key(name)
    contract_type = pandera_schema_to_dagster_type(silver_contract(spec))
    references = [
        dg.AssetDep(key_of(ref.table), partition_mapping=EVERY_EARLIER_DAY)
        for ref in spec.references
        for key_of in (silver_key, quarantine_key)
    ]
    common = {"group_name": "silver", "owners": OWNERS, "kinds": {"polars", "delta", "pandera"}}
    checks = _checks(spec)

    @dg.multi_asset(
        name=f"silver_{name}",
        partitions_def=DAILY,
        specs=[
            dg.AssetSpec(
                key,
                deps=[bronze_key(name), *references],
                description=f"{spec.description} Typed, validated, deduplicated; PII only as "
                "keyed pseudonyms.",
                metadata={"dagster/column_schema": contract_type.metadata["schema"].schema},
                **common,
            ),
            dg.AssetSpec(
                q_key,
                deps=[bronze_key(name)],
                description=f"Rows of bronze/{name} that failed parsing, the contract, the "
                "landing day, a reference or a conflicting duplicate, with the failed checks and "
                "the original values (PII pseudonymized); unreadable records and files with the "
                "reader's error.",
                **common,
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                check, asset=key, description=text, blocking=blocking, partitions_def=DAILY
            )
            for check, (text, blocking) in checks.items()
        ],
    )
    def silver(
        context: dg.AssetExecutionContext, lakehouse: Lakehouse, pseudonymizer: Pseudonymizer
    ):
        require_ready_inputs(context)
        day = context.partition_key
        bronze_version = lakehouse.version(f"bronze/{name}")
        bronze = lakehouse.scan(
            f"bronze/{name}", partitions=[day], version=bronze_version
        ).collect()
        result = to_silver(
            bronze.drop(PARTITION_COLUMN),
            spec,
            pseudonymizer.key_bytes,
            day=date.fromisoformat(day),
            known={
                ref.column: known_ids(lakehouse, ref.table, day, named(bronze, spec, ref.column))
                for ref in spec.references
            },
        )
        q_commit = lakehouse.write_partition(f"silver/{name}_quarantine", result.quarantine, day)
        yield dg.MaterializeResult(
            asset_key=q_key, metadata=table_metadata(q_commit, result.quarantine)
        )

        def write() -> dg.MaterializeResult:
            commit = lakehouse.write_partition(f"silver/{name}", result.silver, day)
            return dg.MaterializeResult(
                asset_key=key,
                metadata={
                    **table_metadata(commit, result.silver),
                    **quality.row_accounting(result).metadata,
                    "input_versions": {f"bronze/{name}": bronze_version},
                },
            )

        yield from publish(
            [
                check_result(check, outcome, asset_key=key, blocking=checks[check][1])
                for check, outcome in _outcomes(spec, result).items()
            ],
            write,
        )

    return silver


SILVER_ASSETS = [build_silver_assets(spec) for spec in LANDING_TABLES.values()]
