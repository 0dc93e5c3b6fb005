"""Resources for the current deployment, chosen from the environment in one place."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import dagster as dg

from feature_store.online import OnlineStoreResource
from resources.alerts import Alerts
from resources.lakehouse import Lakehouse
from resources.lakehouse_io import LakehouseIOManager
from resources.landing_zone import LandingZone
from resources.pseudonymizer import Pseudonymizer
from resources.serving import KubernetesServing, ServingTarget
from resources.settings import Settings
from resources.tracking import MlflowTracking
from resources.trainer import StudyStorage, Trainer

__all__ = [
    "Alerts",
    "Lakehouse",
    "LakehouseIOManager",
    "LandingZone",
    "MlflowTracking",
    "Pseudonymizer",
    "ServingTarget",
    "Settings",
    "StudyStorage",
    "Trainer",
    "build_resources",
]


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings.from_env()
    lakehouse = Lakehouse(root_uri=settings.lakehouse_uri, storage_options=settings.storage_options)
    return {
        "lakehouse": lakehouse,
        "io_manager": LakehouseIOManager(lakehouse=lakehouse),
        "landing": LandingZone(
            root=settings.landing_uri, storage_options=settings.landing_storage_options
        ),
        "pseudonymizer": Pseudonymizer(key=dg.EnvVar("PSEUDONYMIZATION_KEY")),
        "online_store": OnlineStoreResource(url=settings.online_store_url),
        "pipes": training_pipes(settings),
        "trainer": Trainer(**settings.training),
        "mlflow": MlflowTracking(
            tracking_uri=settings.mlflow_tracking_uri, artifact_root=settings.mlflow_artifact_root
        ),
        "studies": StudyStorage(url=settings.optuna_storage),
        "alerts": Alerts(
            webhook_url=dg.EnvVar("ALERT_WEBHOOK_URL") if settings.alert_webhook else None
        ),
        "serving": ServingTarget(
            bentoml_home=str(settings.home / "bentoml"),
            state_dir=str(settings.home / "serving"),
            token=dg.EnvVar("SERVING_TOKEN"),
            environment=settings.service_environment(),
            bento_store=settings.bento_store,
            bento_storage_options=settings.bento_storage_options,
            kubernetes=kubernetes_serving(settings),
        ),
    }


def kubernetes_serving(settings: Settings) -> KubernetesServing | None:
    """The settings' cluster as the serving resource's config; None serves on this machine."""
    cluster = settings.serving_cluster
    if cluster is None:
        return None
    return KubernetesServing(**asdict(cluster))


def training_pipes(settings: Settings) -> dg.PipesClient:
    """A subprocess locally, dagster-k8s' Pipes client where a training pod is configured."""
    if settings.training_pod is None:
        return dg.PipesSubprocessClient()
    # Imported here: dagster-k8s loads the Kubernetes client (a second), which only a cluster uses.
    from dagster_k8s import PipesK8sClient

    return PipesK8sClient()
