"""Silver: typed, validated, deduplicated, pseudonymized tables plus their quarantines.

Each table is one multi-asset writing two Delta tables for the day: ``silver/<table>`` and
``silver/<table>_quarantine`` (rejected rows with the checks they failed and their original
values). The quality gates run on the data just written; the blocking ones stop every asset
downstream of a partition that fails them.
"""

from dataclasses import dataclass

import dagster as dg
import polars as pl
from dagster_pandera import pandera_schema_to_dagster_type

from assets.bronze import bronze_key
from assets.conventions import DAILY, OWNERS
from assets.metadata import check_result, table_metadata
from medallion import quality
from medallion.contracts import silver_contract
from medallion.silver import SilverResult, to_silver
from medallion.tables import LANDING_TABLES, TableSpec
from resources import Lakehouse, Pseudonymizer
from resources.lakehouse import PARTITION_COLUMN

MAX_QUARANTINE_RATE = 0.05
MAX_DUPLICATE_RATE = 0.05
MAX_OPTIONAL_NULL_RATE = 0.25


@dataclass(frozen=True)
class Reference:
    """``column`` of this table must name an entity already in ``table`` (up to this day)."""

    column: str
    table: str
    key: str
    max_orphan_rate: float


REFERENCES: dict[str, tuple[Reference, ...]] = {
    "transactions": (
        Reference("customer_id", "customers", "customer_id", 0.01),
        Reference("merchant_id", "merchants", "merchant_id", 0.01),
    ),
    # A chargeback may point at a transaction that was itself quarantined.
    "chargebacks": (Reference("transaction_id", "transactions", "transaction_id", 0.05),),
}

CHECKS: dict[str, tuple[str, bool]] = {
    "contract": ("Silver rows match the pandera contract (types, rules, unique keys).", True),
    "row_accounting": ("bronze rows = silver + quarantined + removed duplicates.", True),
    "quarantine_rate": (f"At most {MAX_QUARANTINE_RATE:.0%} of rows quarantined.", True),
    "duplicate_rate": (f"At most {MAX_DUPLICATE_RATE:.0%} of rows are duplicates.", False),
    "null_rates": (f"Optional columns at most {MAX_OPTIONAL_NULL_RATE:.0%} null.", False),
}
REFERENTIAL_CHECK = ("Every reference names a known entity.", True)


def silver_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", table])


def quarantine_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", f"{table}_quarantine"])


def _checks(spec: TableSpec) -> dict[str, tuple[str, bool]]:
    checks = dict(CHECKS)
    if spec.name in REFERENCES:
        checks["referential_integrity"] = REFERENTIAL_CHECK
    return checks


def _outcomes(
    spec: TableSpec, result: SilverResult, lakehouse: Lakehouse, day: str
) -> dict[str, quality.Outcome]:
    outcomes = {
        "contract": quality.contract(result.silver, spec),
        "row_accounting": quality.row_accounting(result),
        "quarantine_rate": quality.quarantine_rate(result, MAX_QUARANTINE_RATE),
        "duplicate_rate": quality.duplicate_rate(result, MAX_DUPLICATE_RATE),
        "null_rates": quality.null_rates(result.silver, spec, MAX_OPTIONAL_NULL_RATE),
    }
    references = [
        quality.referential_integrity(
            result.silver,
            ref.column,
            known_ids(lakehouse, ref.table, ref.key, day),
            ref.max_orphan_rate,
        )
        for ref in REFERENCES.get(spec.name, ())
    ]
    if references:
        outcomes["referential_integrity"] = quality.Outcome(
            all(o.passed for o in references),
            "; ".join(o.description for o in references),
            {k: v for o in references for k, v in o.metadata.items()},
        )
    return outcomes


def known_ids(lakehouse: Lakehouse, table: str, key: str, day: str) -> pl.Series:
    """Every ``key`` of silver ``table`` written for this day or earlier."""
    frame = lakehouse.scan_or_empty(f"silver/{table}", pl.Schema({key: pl.String}))
    if PARTITION_COLUMN in frame.collect_schema():
        frame = frame.filter(pl.col(PARTITION_COLUMN) <= day)
    return frame.select(key).unique().collect().to_series()


def build_silver_assets(spec: TableSpec) -> dg.AssetsDefinition:
    name = spec.name
    key, q_key = silver_key(name), quarantine_key(name)
    contract_type = pandera_schema_to_dagster_type(silver_contract(spec))
    upstream = [bronze_key(name), *(silver_key(r.table) for r in REFERENCES.get(name, ()))]
    common = {"group_name": "silver", "owners": OWNERS, "kinds": {"polars", "delta", "pandera"}}
    checks = _checks(spec)

    @dg.multi_asset(
        name=f"silver_{name}",
        partitions_def=DAILY,
        specs=[
            dg.AssetSpec(
                key,
                deps=upstream,
                description=f"{spec.description} Typed, validated, deduplicated; PII only as "
                "keyed pseudonyms.",
                metadata={"dagster/column_schema": contract_type.metadata["schema"].schema},
                **common,
            ),
            dg.AssetSpec(
                q_key,
                deps=[bronze_key(name)],
                description=f"Rows of bronze/{name} that failed parsing or the contract, with the "
                "failed checks and the original values (PII pseudonymized).",
                **common,
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(check, asset=key, description=text, blocking=blocking)
            for check, (text, blocking) in checks.items()
        ],
    )
    def silver(
        context: dg.AssetExecutionContext, lakehouse: Lakehouse, pseudonymizer: Pseudonymizer
    ):
        day = context.partition_key
        bronze_version = lakehouse.version(f"bronze/{name}")
        bronze = lakehouse.scan(
            f"bronze/{name}", partitions=[day], version=bronze_version
        ).collect()
        result = to_silver(bronze.drop(PARTITION_COLUMN), spec, pseudonymizer.key_bytes)
        commit = lakehouse.write_partition(f"silver/{name}", result.silver, day)
        q_commit = lakehouse.write_partition(f"silver/{name}_quarantine", result.quarantine, day)
        accounting = quality.row_accounting(result).metadata
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                **table_metadata(commit, result.silver),
                **accounting,
                "input_versions": {f"bronze/{name}": bronze_version},
            },
        )
        yield dg.MaterializeResult(
            asset_key=q_key, metadata=table_metadata(q_commit, result.quarantine)
        )
        for check, outcome in _outcomes(spec, result, lakehouse, day).items():
            yield check_result(check, outcome, asset_key=key, blocking=checks[check][1])

    return silver


SILVER_ASSETS = [build_silver_assets(spec) for spec in LANDING_TABLES.values()]
