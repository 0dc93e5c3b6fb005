"""A deployment follows its model's aliases: when the registry's champion or challenger moves, the
service is rebuilt and switched to it.

Aliases move outside Dagster (a person's ``make approve``) or inside the evaluation (a version
that passed its gates becomes challenger; a model with ``auto_promote`` becomes champion), so a
sensor comparing the registry with what was last deployed is the one place that notices both.
Approving is then the only step a person takes between a retraining and its version serving.
"""

import dagster as dg

from factories.deployments import served_versions
from resources.audit import registry_audit
from resources.lakehouse import Lakehouse
from resources.lakehouse_io import asset_key
from resources.tracking import MlflowTracking
from serving.deployments import Deployment
from serving.scoring import CHALLENGER, CHAMPION

NONE = "none"
"""How the deployment's metadata names an arm it does not serve."""


def release_sensor(deployment: Deployment) -> dg.SensorDefinition:
    """Requests ``deploy_<name>`` when the versions it should serve differ from those it serves.

    The run key names the deployment's last materialization as well as the wanted versions, so
    a failed deploy is not retried every tick, while a later move back (a rollback to a version
    served before) is still a new release.
    """
    key = asset_key(deployment.table)

    @dg.sensor(
        name=f"{deployment.name}_release",
        job_name=f"deploy_{deployment.name}",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Deploy {deployment.name} again when {deployment.model}'s champion or "
        "challenger changes in the registry.",
    )
    def _release(
        context: dg.SensorEvaluationContext, mlflow: MlflowTracking, lakehouse: Lakehouse
    ) -> dg.SensorResult:
        registry = mlflow.registry(registry_audit(lakehouse))
        if registry.version_of(deployment.model, CHAMPION) is None:
            return dg.SensorResult(skip_reason=f"{deployment.model} has no {CHAMPION} yet")
        wanted = served_versions(registry, deployment)
        wanted.setdefault(CHALLENGER, NONE)
        records = context.instance.fetch_materializations(key, limit=1, ascending=False).records
        record = records[0] if records else None
        materialization = record.asset_materialization if record else None
        shown = materialization.metadata if materialization else {}
        live = {
            CHAMPION: str(shown["model_version"].value) if "model_version" in shown else NONE,
            CHALLENGER: str(shown["challenger_version"].value)
            if "challenger_version" in shown
            else NONE,
        }
        if live == wanted:
            return dg.SensorResult(
                skip_reason=f"{deployment.name} serves {_versions(live)}, as the registry says"
            )
        since = record.storage_id if record is not None else 0
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{deployment.name}:{since}:{_versions(wanted)}",
                    tags={
                        "release": deployment.name,
                        "champion_version": wanted[CHAMPION],
                        "challenger_version": wanted[CHALLENGER],
                        "previous_version": live[CHAMPION],
                    },
                )
            ]
        )

    return _release


def _versions(arms: dict[str, str]) -> str:
    return ", ".join(f"{arm} {version}" for arm, version in arms.items())
