"""Turns each derived table declaration (gold) into a daily asset with its checks and lineage.

Each input becomes an asset input whose partition mapping is the declared span of days, so the
UI shows which days a gold day reads and a late input day marks the gold days it changes as
needing an update. The IO manager reads the inputs (pinned to a table version) and writes the
output; checks run on the rows in memory before anything is published.
"""

import dagster as dg
import polars as pl

from factories.checks import check_result, publish
from factories.policies import DAILY_BY_6AM, OVERDUE, day_mapping
from factories.readiness import require_ready_inputs
from medallion.derived import DerivedTable
from resources.lakehouse_io import asset_key


def column_descriptions(table: DerivedTable) -> dict[str, str]:
    """Each column's meaning and its lineage in words: the open-source UI does not draw lineage."""
    return {
        name: f"{column.description} From "
        + ", ".join(_source_column(table, source) for source in column.sources)
        + "."
        for name, column in table.columns.items()
    }


def _source_column(table: DerivedTable, source: str) -> str:
    name, _, column = source.partition(".")
    return f"{table.inputs[name].table}.{column}"


def column_lineage(table: DerivedTable) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            name: [
                dg.TableColumnDep(asset_key(table.inputs[source].table), column)
                for source, _, column in (s.partition(".") for s in column.sources)
            ]
            for name, column in table.columns.items()
        }
    )


def derived_asset(table: DerivedTable, daily: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    key = asset_key(table.table)
    declared_schema = dg.TableSchema(  # types come with the first materialization
        columns=[
            dg.TableColumn(name, "", description=text)
            for name, text in column_descriptions(table).items()
        ]
    )
    lineage = column_lineage(table)

    @dg.asset(
        key=key,
        partitions_def=daily,
        group_name=table.layer,
        owners=[table.owner],
        freshness_policy=DAILY_BY_6AM,
        automation_condition=OVERDUE,
        kinds={"polars", "delta"},
        description=table.description,
        metadata={"dagster/column_schema": declared_schema},
        ins={
            name: dg.AssetIn(asset_key(read.table), partition_mapping=day_mapping(read.days))
            for name, read in table.inputs.items()
        },
        check_specs=[
            dg.AssetCheckSpec(
                check.name,
                asset=key,
                partitions_def=daily,
                blocking=check.blocking,
                description=check.description,
            )
            for check in table.checks
        ],
    )
    def derived(context: dg.AssetExecutionContext, **inputs: pl.LazyFrame):
        require_ready_inputs(context)
        rows = table.transform(**inputs)
        checks = [
            check_result(
                check.name, check.evaluate(rows, inputs), asset_key=key, blocking=check.blocking
            )
            for check in table.checks
        ]
        extra = table.metadata(rows) if table.metadata else {}
        yield from publish(
            checks,
            lambda: [dg.Output(rows, metadata={"dagster/column_lineage": lineage, **extra})],
        )

    return derived
