"""Whether an asset's inputs for a day are there and sound, asked before anything is read.

Dagster's blocking checks stop downstream steps of the same run only; a later run (a schedule,
a backfill, a click in the UI) would read a partition whose gate failed, or one that never
arrived, and publish a complete-looking result over the gap. So every asset asks first: each
upstream partition its dependency maps to must be materialized, and its latest attempt must
have succeeded. Assets never publish a partition that fails a blocking check (see
``factories.metadata.publish``), so a failed gate shows here as a failed partition.

Which partitions count: of those the dependency's partition mapping names (the mapping drops
days before the pipeline's start date), the ones between the upstream's first attempted day and
the newer of the day itself and its newest attempted day. Before its first day the upstream was
never run, so that history does not exist (a lake started last week has no 30-day lookback
yet). After its newest day nothing has arrived yet: gold for day D is built before the
chargebacks of D+1..D+45 land, and takes them when they do. The day itself always counts.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import dagster as dg
from dagster._core.storage.partition_status_cache import (
    AssetPartitionStatus,
    AssetStatusCacheValue,
    get_and_update_asset_status_cache_value,
)

_REASONS = {
    None: "was never materialized",
    AssetPartitionStatus.FAILED: "failed its last run (a blocking check or an error)",
    AssetPartitionStatus.IN_PROGRESS: "is being materialized right now",
}


def upstream_days(
    assets_def: dg.AssetsDefinition,
    day: str,
    current_time: datetime | None = None,
    whole: Collection[dg.AssetKey] = (),
) -> dict[dg.AssetKey, list[str]]:
    """Every upstream asset of ``assets_def`` but the ``whole`` (unpartitioned) ones, with the
    days its dependency maps ``day`` to."""
    partitions = assets_def.partitions_def
    assert partitions is not None, f"{assets_def.key} is not partitioned"
    own = {*assets_def.keys, *whole}
    days: dict[dg.AssetKey, set[str]] = {}
    for spec in assets_def.specs:
        for dep in spec.deps:
            if dep.asset_key in own:
                continue
            mapping = assets_def.infer_partition_mapping(spec.key, dep.asset_key, partitions)
            mapped = mapping.get_upstream_mapped_partitions_result_for_partitions(
                partitions.subset_with_partition_keys([day]),
                partitions,
                partitions,
                current_time=current_time,
            )
            days.setdefault(dep.asset_key, set()).update(
                mapped.partitions_subset.get_partition_keys()
            )
    return {key: sorted(found) for key, found in sorted(days.items())}


def partition_statuses(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> dict[str, AssetPartitionStatus]:
    """Every attempted partition of ``key`` with its status, as the UI shows it.

    The status cache's subsets give the few attempted days at once; asking per day
    (``get_status_by_partition``) tests each of a thousand days of history against them.
    """
    cache = get_and_update_asset_status_cache_value(instance, key, partitions)
    if not isinstance(cache, AssetStatusCacheValue):
        return {}
    statuses: dict[str, AssetPartitionStatus] = {}
    for status, subset in (  # later ones win, as in get_status_by_partition
        (AssetPartitionStatus.MATERIALIZED, cache.deserialize_materialized_partition_subsets),
        (AssetPartitionStatus.FAILED, cache.deserialize_failed_partition_subsets),
        (AssetPartitionStatus.IN_PROGRESS, cache.deserialize_in_progress_partition_subsets),
    ):
        statuses.update(dict.fromkeys(subset(partitions).get_partition_keys(), status))
    return statuses


def unready_inputs(
    instance: dg.DagsterInstance,
    assets_def: dg.AssetsDefinition,
    day: str,
    current_time: datetime | None = None,
    whole: Collection[dg.AssetKey] = (),
) -> list[str]:
    """Plain-words reasons why ``assets_def`` must not be built for ``day``; empty when ready.
    An unpartitioned (``whole``) input must have been materialized, whatever the day."""
    partitions = assets_def.partitions_def
    assert partitions is not None
    reasons = [
        f"{key.to_user_string()} {_REASONS[None]}"
        for key in sorted(whole)
        if instance.get_latest_materialization_event(key) is None
    ]
    for key, mapped in upstream_days(assets_def, day, current_time, whole).items():
        status = partition_statuses(instance, key, partitions)
        attempted = [d for d in mapped if d in status]
        first, horizon = min([day, *attempted]), max([day, *attempted])
        for upstream_day in mapped:
            state = status.get(upstream_day)
            if first <= upstream_day <= horizon and state != AssetPartitionStatus.MATERIALIZED:
                reasons.append(f"{key.to_user_string()} {upstream_day} {_REASONS[state]}")
    return reasons


def require_ready_inputs(context: dg.AssetExecutionContext) -> None:
    """Fail the step, before anything is read or written, when an input is missing or failed."""
    graph = context.job_def.asset_layer.asset_graph
    whole = [
        key
        for key in context.assets_def.dependency_keys
        if graph.has(key) and not graph.get(key).is_partitioned
    ]
    reasons = unready_inputs(
        context.instance, context.assets_def, context.partition_key, whole=whole
    )
    if reasons:
        raise dg.Failure(
            description=f"Not built for {context.partition_key}: its inputs are not sound. "
            + "; ".join(reasons)
            + ". Materialize or fix those partitions first.",
            metadata={"unready_inputs": reasons},
        )


def unready_history(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey], partitions: dg.PartitionsDefinition
) -> list[str]:
    """Why an unpartitioned asset that reads every day of ``keys`` must not be built now.

    The per-day rule above, over the whole history: from each input's first attempted day to
    its newest, every day must be materialized and its last attempt successful. Days after the
    newest were never run (nothing has landed yet), so they are no gap.
    """
    reasons = []
    days = partitions.get_partition_keys()
    for key in keys:
        status = partition_statuses(instance, key, partitions)
        if not status:
            reasons.append(f"{key.to_user_string()} {_REASONS[None]}")
            continue
        first, newest = min(status), max(status)
        reasons += [
            f"{key.to_user_string()} {day} {_REASONS[status.get(day)]}"
            for day in days
            if first <= day <= newest and status.get(day) != AssetPartitionStatus.MATERIALIZED
        ]
    return reasons
