"""Turns feature view declarations into Dagster assets: the offline tables and the online store.

A platform engineer's side: a data scientist never edits it. Each view becomes a daily partitioned
asset over its source with the history its windows need, carries its whole declaration as
metadata (the registry a person browses in the UI), and its freshness SLA as a freshness policy.
"""

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from factories.policies import OVERDUE, day_mapping
from factories.readiness import require_ready_inputs
from feature_store.offline import build_feature_rows, push_latest
from feature_store.online import OnlineStoreResource
from feature_store.views import CREATED_TIMESTAMP, EVENT_TIMESTAMP, EventWindow, FeatureView
from medallion.derived import Days
from resources.lakehouse_io import asset_key

GROUP = "features"


def view_key(view: FeatureView) -> dg.AssetKey:
    return asset_key(view.table)


def registry_metadata(view: FeatureView) -> dict[str, object]:
    """The view's declaration, as the UI's catalog shows it."""
    return {
        "entity": view.entity.name,
        "join_key": view.entity.join_key,
        "ttl": str(view.ttl),
        "freshness_sla": str(view.freshness_sla),
        "lookback": str(view.lookback),
        "source": "/".join(view.source),
        "features": dg.TableSchema(
            columns=[dg.TableColumn(f.name, str(f.dtype), f.description) for f in view.features]
        ),
    }


def feature_view_asset(
    view: FeatureView, daily: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    lookback_days = math.ceil(view.lookback / timedelta(days=1))

    @dg.asset(
        key=view_key(view),
        partitions_def=daily,
        group_name=GROUP,
        owners=[view.owner],
        kinds={"polars", "delta"},
        description=view.description,
        metadata={**registry_metadata(view), "dagster/column_schema": declared_schema(view)},
        tags={"feature_view": view.name, **view.tags},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=view.freshness_sla),
        automation_condition=OVERDUE,
        ins={
            "source": dg.AssetIn(
                asset_key("/".join(view.source)),
                partition_mapping=day_mapping(Days(before=lookback_days)),
            )
        },
    )
    def feature_table(context: dg.AssetExecutionContext, source: pl.LazyFrame) -> pl.DataFrame:
        require_ready_inputs(context)
        window = context.partition_time_window
        rows = build_feature_rows(
            view,
            source,
            EventWindow(window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)),
            created_at=datetime.now(UTC).replace(tzinfo=None),
        )
        context.add_output_metadata({"entities": rows[view.entity.join_key].n_unique()})
        return rows

    return feature_table


def declared_schema(view: FeatureView) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, "", description=text)
            for name, text in column_descriptions(view).items()
        ]
    )


def column_descriptions(view: FeatureView) -> dict[str, str]:
    return {
        view.entity.join_key: view.entity.description or f"The {view.entity.name}.",
        EVENT_TIMESTAMP: "When these values became current.",
        CREATED_TIMESTAMP: "When this row was computed; breaks ties between equal event times.",
        **{f.name: f.description for f in view.features},
    }


def online_store_asset(
    views: Mapping[str, FeatureView], daily: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    """After each offline partition, push the newest row of every entity to the online store."""

    @dg.asset(
        key=dg.AssetKey(["features", "online"]),
        partitions_def=daily,
        group_name=GROUP,
        owners=["team:data-platform"],
        kinds={"polars", "sqlite", "redis"},
        description="Latest feature values per entity for serving, updated incrementally after "
        "each offline partition; a row never replaces a newer one.",
        ins={name: dg.AssetIn(view_key(view)) for name, view in views.items()},
        automation_condition=OVERDUE,
    )
    def online(
        context: dg.AssetExecutionContext,
        online_store: OnlineStoreResource,
        **offline: pl.LazyFrame,
    ) -> dg.MaterializeResult:
        require_ready_inputs(context)
        with online_store.open() as store:
            written = {
                name: push_latest(store, view, offline[name].collect())
                for name, view in views.items()
            }
        return dg.MaterializeResult(
            metadata={"entities_written": written, "store": online_store.url.split("://")[0]}
        )

    return online
