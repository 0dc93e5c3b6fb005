"""The one Definitions object: every declaration in assets/, made into assets by the factories,
the jobs and schedules over them, and the resources of this deployment.

Settings are read from the environment once, when Dagster loads the code location (not at
import), and passed down: the partition calendar starts at ``PIPELINE_START_DATE``.
"""

from __future__ import annotations

import dagster as dg

from factories import build_assets
from factories.policies import INGEST_GROUPS, daily_partitions
from jobs.ingest import daily_ingest, relabel_gold
from jobs.monitoring import monitoring_jobs
from jobs.serving import serving_jobs
from jobs.training import train_model
from registry import discover
from resources import Settings, build_resources
from sensors.alerts import check_failure_alerts, run_failure_alerts
from sensors.drift import drift_sensor
from sensors.freshness import freshness_checks, freshness_sensors
from sensors.releases import release_sensor

INGEST = set(INGEST_GROUPS)


def build_definitions(settings: Settings, declarations: str = "assets") -> dg.Definitions:
    registry = discover(declarations)
    daily = daily_partitions(settings.partition_start)
    assets = build_assets(registry, daily, settings.training_pod)
    by_key = {key: a for a in assets for key in a.keys}
    # The nightly ingest's days are promised by the deadline: checked, alerted, remade.
    checks = freshness_checks([a for a in assets if set(a.group_names_by_key.values()) <= INGEST])
    deadline = dg.AssetSelection.checks(*(key for c in checks for key in c.check_keys))
    ingest, ingest_schedule = daily_ingest(deadline)
    jobs, schedules = [ingest], [ingest_schedule]
    late = [t for t in registry.derived.values() if any(i.days.after for i in t.inputs.values())]
    if late:
        relabel, relabel_schedule = relabel_gold(late, by_key, deadline)
        jobs.append(relabel)
        schedules.append(relabel_schedule)
    for model in registry.models.values():
        train, train_schedule = train_model(model, registry.training_sets[model.training_set])
        jobs.append(train)
        schedules.append(train_schedule)
    sensors = [
        run_failure_alerts(),
        check_failure_alerts(),
        *freshness_sensors(checks),
        # On by default, where Dagster's own default sensor is off: the monitors' assets follow
        # the day's scores and each new deployment, and a day missed by the ingest is made at
        # its deadline, through it; nobody should have to remember to switch the loop on.
        dg.AutomationConditionSensorDefinition(
            "automation",
            target=dg.AssetSelection.all(),
            default_status=dg.DefaultSensorStatus.RUNNING,
        ),
    ]
    for deployment in registry.deployments.values():
        serving, serving_schedules = serving_jobs(deployment)
        jobs += serving
        schedules += serving_schedules
        sensors.append(release_sensor(deployment))
    for monitor in registry.monitors.values():
        watching, watching_schedules = monitoring_jobs(monitor)
        jobs += watching
        schedules += watching_schedules
        model = registry.deployments[monitor.deployment].model
        sensors.append(drift_sensor(monitor, f"train_{model}"))
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        asset_checks=checks,
        resources=build_resources(settings),
        executor=step_executor(settings),
    )


def step_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """Each asset step a pod of its own in a cluster (``STEP_PODS``); else Dagster's default."""
    if not settings.step_pods:
        return None
    # Imported here: the Kubernetes client takes a second to load, and only a cluster needs it.
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
