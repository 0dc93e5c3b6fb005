"""Per monitor: the watch (profile and drift report), its reference, and its performance.

The watch and the reference follow their inputs by declarative automation (the
``automation`` sensor); their jobs are for a person's backfill or rerun.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from monitoring.monitors import Monitor
from resources.lakehouse_io import asset_key


def monitoring_jobs(
    monitor: Monitor,
) -> tuple[list[UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition]]:
    name = monitor.name
    watch = dg.define_asset_job(
        f"monitor_{name}",
        selection=dg.AssetSelection.assets(
            asset_key(monitor.profiles_table), asset_key(monitor.drift_table)
        ),
        description="Profile a scored day and judge its drift against the champion's reference "
        "(automation does it as each day is scored); the drift sensor reads the report.",
    )
    reference = dg.define_asset_job(
        f"reference_{name}",
        selection=dg.AssetSelection.assets(asset_key(monitor.reference_table)),
        description="Profile the training window of the champion now deployed, and calibrate the "
        "drift thresholds on its days: run after each new version goes live.",
    )
    performance = dg.define_asset_job(
        f"performance_{name}",
        selection=dg.AssetSelection.assets(asset_key(monitor.performance_table)),
        description="Realized AUROC, precision and recall of every scored day, as the labels "
        "known now say.",
    )
    schedules = [
        dg.ScheduleDefinition(
            job=performance,
            cron_schedule="0 8 * * *",
            execution_timezone="UTC",
            description="Each day at 08:00, after the night's chargebacks are ingested.",
        ),
    ]
    return [watch, reference, performance], schedules
