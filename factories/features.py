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

from factories.conventions import DAILY
from factories.metadata import table_metadata
from factories.readiness import require_ready_inputs
from feature_store.offline import build_feature_rows, latest_per_entity
from feature_store.online import OnlineStoreResource
from feature_store.views import CREATED_TIMESTAMP, EVENT_TIMESTAMP, FeatureView, Window
from resources import Lakehouse
from resources.lakehouse import PARTITION_COLUMN

GROUP = "features"


def view_key(view: FeatureView) -> dg.AssetKey:
    return dg.AssetKey(["features", view.name])


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


def feature_view_asset(view: FeatureView) -> dg.AssetsDefinition:
    key = view_key(view)
    source = dg.AssetKey(list(view.source))
    lookback_days = math.ceil(view.lookback / timedelta(days=1))

    @dg.asset(
        key=key,
        partitions_def=DAILY,
        group_name=GROUP,
        owners=[view.owner],
        kinds={"polars", "delta"},
        description=view.description,
        metadata=registry_metadata(view),
        tags={"feature_view": view.name, **view.tags},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=view.freshness_sla),
        deps=[
            dg.AssetDep(
                source,
                partition_mapping=dg.TimeWindowPartitionMapping(
                    start_offset=-lookback_days, allow_nonexistent_upstream_partitions=True
                ),
            )
        ],
    )
    def feature_table(context: dg.AssetExecutionContext, lakehouse: Lakehouse):
        require_ready_inputs(context)
        window = context.partition_time_window
        days = [
            (window.start - timedelta(days=offset)).date().isoformat()
            for offset in range(lookback_days + 1)
        ]
        source_table = "/".join(view.source)
        rows = build_feature_rows(
            view,
            lakehouse.scan(source_table).filter(pl.col(PARTITION_COLUMN).is_in(days)),
            Window(window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)),
            created_at=datetime.now(UTC).replace(tzinfo=None),
        )
        commit = lakehouse.write_partition(view.table, rows, context.partition_key)
        return dg.MaterializeResult(
            metadata={
                **table_metadata(commit, rows, descriptions=column_descriptions(view)),
                "source_version": lakehouse.version(source_table),
                "entities": rows[view.entity.join_key].n_unique(),
            }
        )

    return feature_table


def column_descriptions(view: FeatureView) -> dict[str, str]:
    return {
        view.entity.join_key: view.entity.description or f"The {view.entity.name}.",
        EVENT_TIMESTAMP: "When these values became current.",
        CREATED_TIMESTAMP: "When this row was computed; breaks ties between equal event times.",
        **{f.name: f.description for f in view.features},
    }


def online_store_asset(views: Mapping[str, FeatureView]) -> dg.AssetsDefinition:
    """After each offline partition, push the newest row of every entity to the online store."""

    @dg.asset(
        key=dg.AssetKey(["features", "online"]),
        partitions_def=DAILY,
        group_name=GROUP,
        owners=["team:data-platform"],
        kinds={"polars", "sqlite", "redis"},
        description="Latest feature values per entity for serving, updated incrementally after "
        "each offline partition; a row never replaces a newer one.",
        deps=[view_key(v) for v in views.values()],
    )
    def online(
        context: dg.AssetExecutionContext, lakehouse: Lakehouse, online_store: OnlineStoreResource
    ):
        require_ready_inputs(context)
        written = {}
        with online_store.open() as store:
            for view in views.values():
                rows = lakehouse.scan(view.table, partitions=[context.partition_key]).collect()
                latest = latest_per_entity(rows, view.entity.join_key).select(
                    view.entity.join_key, EVENT_TIMESTAMP, *view.schema
                )
                written[view.name] = store.write(
                    view.name, latest, entity_key=view.entity.join_key, timestamp=EVENT_TIMESTAMP
                )
        return dg.MaterializeResult(
            metadata={"entities_written": written, "store": online_store.url.split("://")[0]}
        )

    return online
