"""Training in a GPU pod by configuration alone: the pod dagster-k8s launches and the step pod its
executor starts, built by dagster-k8s' own code against a fake Kubernetes API."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
from dagster_k8s import PipesK8sClient
from dagster_k8s.client import DagsterKubernetesClient
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)
from dagster_pipes import PIPES_PROTOCOL_VERSION, PIPES_PROTOCOL_VERSION_FIELD

from assets.models.fraud_scorer import FRAUD_SCORER
from assets.training.fraud import FRAUD
from factories.models import _launch, model_assets
from resources import Settings, build_resources
from resources.k8s import GPU_RESOURCE, STEP_RESOURCES, TrainingPod

pytestmark = [
    # Raised inside dagster-k8s' Pipes client, not by this code.
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.op is deprecated"),
]

KUBERNETES_VERSION = "1.29.0"
SECRET_VALUE = "s3-secret-value"
TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
NODE_SELECTOR = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
PRODUCTION = {
    "PLATFORM_ENV": "production",
    "LAKEHOUSE_URI": "s3://lake/prod",
    "ONLINE_STORE_URL": "redis://redis:6379/0",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "OPTUNA_STORAGE": "postgresql://optuna@postgres/optuna",
    "AWS_ACCESS_KEY_ID": "key-id",
    "AWS_SECRET_ACCESS_KEY": SECRET_VALUE,
    "TRAINING_IMAGE": "registry.example/mlops-platform-cuda:1.0",
    "TRAINING_GPUS": "4",
    "TRAINING_NAMESPACE": "training",
    "TRAINING_NODE_SELECTOR": json.dumps(NODE_SELECTOR),
    "TRAINING_TOLERATIONS": json.dumps(TOLERATIONS),
    "TRAINING_SECRETS": "platform-s3, platform-postgres",
}


class FakeCluster:
    """The Kubernetes API as the Pipes client uses it: it keeps the pods it is sent, and their
    log is a training run that reports one materialization."""

    def __init__(self) -> None:
        self.created: list[tuple[str, Any]] = []
        self.deleted: list[str] = []

    def create_namespaced_pod(self, namespace: str, body: Any) -> None:
        self.created.append((namespace, body))

    def read_namespaced_pod_log(self, name: str, namespace: str, **_: Any) -> Iterator[bytes]:
        messages = [
            ("opened", {}),
            (
                "report_asset_materialization",
                {
                    "asset_key": "trained",
                    "metadata": {"test_auroc": {"raw_value": 0.97, "type": "float"}},
                    "data_version": None,
                },
            ),
            ("closed", {}),
        ]
        for second, (method, params) in enumerate(messages):
            message = {PIPES_PROTOCOL_VERSION_FIELD: PIPES_PROTOCOL_VERSION, "method": method}
            line = json.dumps({**message, "params": params})
            yield f"2024-01-01T00:00:0{second}.000000Z {line}\n".encode()

    def delete_namespaced_pod(self, name: str, namespace: str) -> None:
        self.deleted.append(name)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    production_client = DagsterKubernetesClient.production_client
    monkeypatch.setattr(
        DagsterKubernetesClient,
        "production_client",
        staticmethod(lambda: production_client(batch_api_override=fake, core_api_override=fake)),
    )
    monkeypatch.setattr(DagsterKubernetesClient, "wait_for_pod", lambda *_, **__: None)
    monkeypatch.setattr(PipesK8sClient, "_load_k8s_config", lambda _: None)
    return fake


def serialized(model: Any, kind: str, api_version: str) -> dict[str, Any]:
    """A kubernetes client model as the API server receives it, checked against its schema."""
    manifest = {"apiVersion": api_version, "kind": kind}
    manifest |= kubernetes.client.ApiClient().sanitize_for_serialization(model)
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    return manifest


def test_locally_training_stays_a_subprocess(tmp_path: Path) -> None:
    settings = Settings.from_env({"PLATFORM_HOME": str(tmp_path)})
    resources = build_resources(settings)
    assert settings.training_pod is None
    assert type(resources["pipes"]) is dg.PipesSubprocessClient
    assert resources["trainer"].settings().devices == "auto"
    assert all(not a.op.tags for a in model_assets(FRAUD_SCORER, FRAUD))


def test_the_training_pod_carries_the_configuration(cluster: FakeCluster) -> None:
    settings = Settings.from_env(PRODUCTION)
    pod = settings.training_pod
    assert pod is not None
    resources = build_resources(settings)

    @dg.asset
    def trained(
        context: dg.AssetExecutionContext, pipes: dg.ResourceParam[dg.PipesClient]
    ) -> dg.MaterializeResult:
        return _launch(pipes, pod, context, "training.entry", {"request": "as extras"})

    result = dg.materialize(
        [trained], resources={"pipes": resources["pipes"]}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    metadata = result.asset_materializations_for_node("trained")[0].metadata
    assert metadata["test_auroc"].value == 0.97

    [(namespace, body)] = cluster.created
    assert namespace == "training"
    assert cluster.deleted == [body.metadata.name]
    manifest = serialized(body, "Pod", "v1")
    spec = manifest["spec"]
    [container] = spec["containers"]
    assert container["image"] == "registry.example/mlops-platform-cuda:1.0"
    assert container["command"] == ["python", "-m", "training.entry"]
    assert container["resources"]["limits"] == {GPU_RESOURCE: "4"}
    assert spec["nodeSelector"] == NODE_SELECTOR
    assert spec["tolerations"] == TOLERATIONS
    assert spec["restartPolicy"] == "Never"
    assert body.metadata.labels["app.kubernetes.io/component"] == "training"

    environment = {v["name"]: v.get("value") for v in container["env"]}
    assert settings.service_environment().items() <= environment.items()
    assert "DAGSTER_PIPES_CONTEXT" in environment  # the extras travel in the Pipes context
    assert [s["secretRef"]["name"] for s in container["envFrom"]] == [
        "platform-s3",
        "platform-postgres",
    ]
    assert SECRET_VALUE not in json.dumps(manifest)


def test_lightning_trains_on_every_gpu_of_the_pod_on_one_node() -> None:
    trainer = build_resources(Settings.from_env(PRODUCTION))["trainer"].settings()
    assert (trainer.accelerator, trainer.devices, trainer.num_nodes) == ("gpu", 4, 1)
    with pytest.raises(ValueError, match="TRAINING_DEVICES='2' contradicts"):
        Settings.from_env({**PRODUCTION, "TRAINING_DEVICES": "2"})


def test_the_step_pods_ask_for_no_gpu() -> None:
    pod = Settings.from_env(PRODUCTION).training_pod
    study, model, evaluation = model_assets(FRAUD_SCORER, FRAUD, pod)
    assert not evaluation.op.tags
    for asset in (study, model):
        job = construct_dagster_k8s_job(
            job_config=DagsterK8sJobConfig(
                job_image="registry.example/mlops-platform:1.0",
                dagster_home="/opt/dagster/dagster_home",
                instance_config_map="dagster-instance",
            ),
            args=["dagster", "api", "execute_step"],
            job_name="dagster-step-training",
            component="step_worker",
            user_defined_k8s_config=get_user_defined_k8s_config(asset.op.tags),
        )
        [container] = serialized(job, "Job", "batch/v1")["spec"]["template"]["spec"]["containers"]
        assert container["resources"] == STEP_RESOURCES
        assert container["image"] == "registry.example/mlops-platform:1.0"


@pytest.mark.parametrize(
    ("variable", "value", "error"),
    [
        ("TRAINING_GPUS", "0", "at least one GPU"),
        ("TRAINING_TOLERATIONS", '{"key": "gpu"}', "JSON list"),
        ("TRAINING_NODE_SELECTOR", "gpu=yes", "not valid JSON"),
    ],
)
def test_a_bad_pod_configuration_is_refused(variable: str, value: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TrainingPod.from_env({**PRODUCTION, variable: value}, {})
