"""Gold: ML-ready labelled transactions, one partition per transaction day.

Labels arrive late: chargebacks for day D's transactions land on days D+1 .. D+45, which the
partition mapping declares, so a new chargebacks partition marks the gold days it relabels as
needing an update. Each materialization records the silver table versions it read.
"""

import dagster as dg
import polars as pl

from assets.silver import silver_key
from factories.conventions import DAILY, DAILY_BY_6AM, EVERY_EARLIER_DAY, OWNERS
from factories.metadata import check_result, publish, table_metadata
from factories.readiness import require_ready_inputs
from medallion.gold import GOLD_COLUMNS, GOLD_DESCRIPTIONS, label_transactions
from medallion.quality import Outcome, point_in_time, profile_match_rate
from resources import Lakehouse
from resources.lakehouse import PARTITION_COLUMN

KEY = dg.AssetKey(["gold", "labeled_transactions"])
LABEL_DELAY_DAYS = 45
MIN_PROFILE_MATCH_RATE = 0.99
GOLD_INPUTS = ("transactions", "customers", "merchants", "chargebacks")

DESCRIPTIONS = {
    column: f"{GOLD_DESCRIPTIONS[column]} From "
    + ", ".join(f"silver/{table}.{source}" for table, source in sources)
    + "."
    for column, sources in GOLD_COLUMNS.items()
}
"""Each column's meaning and its lineage in words: the open-source UI does not draw lineage."""

COLUMN_LINEAGE = dg.TableColumnLineage(
    deps_by_column={
        column: [dg.TableColumnDep(silver_key(table), source) for table, source in sources]
        for column, sources in GOLD_COLUMNS.items()
    }
)


@dg.asset(
    key=KEY,
    partitions_def=DAILY,
    group_name="gold",
    owners=OWNERS,
    freshness_policy=DAILY_BY_6AM,
    kinds={"polars", "delta"},
    description="Transactions with the customer profile and merchant valid at event time and "
    "the chargeback label with the time it became known (label_known_at).",
    deps=[
        silver_key("transactions"),
        dg.AssetDep(silver_key("customers"), partition_mapping=EVERY_EARLIER_DAY),
        dg.AssetDep(silver_key("merchants"), partition_mapping=EVERY_EARLIER_DAY),
        dg.AssetDep(
            silver_key("chargebacks"),
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=0,
                end_offset=LABEL_DELAY_DAYS,
                allow_nonexistent_upstream_partitions=True,
            ),
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "row_count",
            asset=KEY,
            partitions_def=DAILY,
            blocking=True,
            description="One gold row per silver row.",
        ),
        dg.AssetCheckSpec(
            "point_in_time",
            asset=KEY,
            partitions_def=DAILY,
            blocking=True,
            description="No future profile version and no label known before the transaction.",
        ),
        dg.AssetCheckSpec(
            "profile_match_rate",
            asset=KEY,
            partitions_def=DAILY,
            description=f"At least {MIN_PROFILE_MATCH_RATE:.1%} of rows have a profile.",
        ),
    ],
)
def labeled_transactions(context: dg.AssetExecutionContext, lakehouse: Lakehouse):
    require_ready_inputs(context)
    day = context.partition_key
    inputs = {t: lakehouse.version(f"silver/{t}") for t in GOLD_INPUTS}
    history = {
        t: lakehouse.scan(f"silver/{t}", version=inputs[t]).filter(pl.col(PARTITION_COLUMN) <= day)
        for t in ("customers", "merchants")
    }
    transactions = lakehouse.scan(
        "silver/transactions", partitions=[day], version=inputs["transactions"]
    )
    chargebacks = lakehouse.scan("silver/chargebacks", version=inputs["chargebacks"])
    gold = label_transactions(transactions, history["customers"], history["merchants"], chargebacks)
    silver_rows = transactions.select(pl.len()).collect().item()

    def write() -> dg.MaterializeResult:
        commit = lakehouse.write_partition("gold/labeled_transactions", gold, day)
        return dg.MaterializeResult(
            metadata={
                **table_metadata(commit, gold, descriptions=DESCRIPTIONS),
                "dagster/column_lineage": COLUMN_LINEAGE,
                "input_versions": {f"silver/{t}": v for t, v in inputs.items()},
                "fraud_labels": int(gold["is_fraud"].sum()),
            }
        )

    checks = [
        check_result(
            "row_count",
            Outcome(
                gold.height == silver_rows, f"{gold.height} gold rows for {silver_rows} silver"
            ),
            asset_key=KEY,
            blocking=True,
        ),
        check_result("point_in_time", point_in_time(gold), asset_key=KEY, blocking=True),
        check_result(
            "profile_match_rate",
            profile_match_rate(gold, MIN_PROFILE_MATCH_RATE),
            asset_key=KEY,
            blocking=False,
        ),
    ]
    yield from publish(checks, write)
