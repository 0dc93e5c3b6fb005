"""Per deployment: a deploy job, the canary job that walks its ramp, and the daily batch scores."""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from resources.lakehouse_io import asset_key
from serving.deployments import Deployment


def serving_jobs(
    deployment: Deployment,
) -> tuple[list[UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition]]:
    name = deployment.name
    deploy = dg.define_asset_job(
        f"deploy_{name}",
        selection=dg.AssetSelection.assets(asset_key(deployment.table)),
        description=f"Build a Bento of the {deployment.model} champion (and challenger) and put "
        "it live beside the running one, switching without a failed request.",
    )
    canary = dg.define_asset_job(
        f"canary_{name}",
        selection=dg.AssetSelection.assets(asset_key(deployment.canary_table)),
        description="Judge the challenger's share since the last step and advance the ramp, "
        "hold, or roll back to the champion alone.",
    )
    score = dg.define_asset_job(
        f"score_{name}",
        selection=dg.AssetSelection.assets(asset_key(deployment.scores_table)),
        description=f"Score a day of {deployment.request_source} with the champion, as served.",
    )
    schedules = [
        dg.ScheduleDefinition(
            job=canary,
            cron_schedule="*/15 * * * *",
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Every 15 minutes while a canary runs; start it with the canary.",
        ),
        dg.build_schedule_from_partitioned_job(
            score, hour_of_day=6, description="Each day at 06:00, the day before."
        ),
    ]
    return [deploy, canary, score], schedules
