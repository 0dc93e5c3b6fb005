"""The Kubernetes deploy mode: what the target applies for a release is a valid set of Kubernetes
objects that serve that release and no secret, the cluster's record of it reads back as what
serves, rollouts are judged as ``kubectl rollout status`` judges them, and deploy/k8s/ is what the
declaration renders today. No cluster runs here (no container runtime), so the target's calls go to
a fake of the Kubernetes API with a Deployment controller, as the training pods' tests do."""

import json
import shlex
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError

from assets.deployments.fraud_api import FRAUD_API
from resources import Settings, build_resources
from serving.deploy import DeployError
from serving.deployments import Scaling
from serving.kubernetes import (
    BENTO_HOME,
    KINDS,
    RELEASE_ANNOTATION,
    Cluster,
    KubernetesTarget,
    main,
    manifests,
    recorded,
    resource_name,
    rollout,
)

KUBERNETES_VERSION = "1.29.0"
RENDERED = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "fraud_api.yaml"
TOKEN = "do-not-write-me-down"
CLUSTER = {
    "PLATFORM_ENV": "production",
    "LAKEHOUSE_URI": "s3://lake/prod",
    "ONLINE_STORE_URL": "redis://redis:6379/0",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "OPTUNA_STORAGE": "postgresql://optuna@postgres/optuna",
    "AWS_ENDPOINT_URL": "https://s3.example",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "not-in-any-manifest",
    "SERVING_TOKEN": TOKEN,
    "SERVING_IMAGE": "registry.example/mlops-platform:1.0.0",
    "SERVING_BENTO_STORE": "s3://lake/bentos",
    "SERVING_NAMESPACE": "mlops",
    "SERVING_SECRETS": "mlops-platform-secrets",
    "PSEUDONYMIZATION_KEY": "k",
}


@pytest.fixture
def cluster_serving(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in CLUSTER.items():
        monkeypatch.setenv(name, value)
    return build_resources(Settings.from_env())["serving"]


def served(cluster_serving: Any, share: float = 0.0) -> list[dict[str, Any]]:
    release = cluster_serving.release(FRAUD_API.name, "fraud_api:abc123", "7", share)
    cluster = cluster_serving.kubernetes.cluster()
    return manifests(FRAUD_API, release, cluster, previous_version="6")


def test_a_cluster_release_is_valid_kubernetes_objects_serving_it(cluster_serving: Any) -> None:
    objects = served(cluster_serving, share=0.1)
    for manifest in objects:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    deployment, service, autoscaler = objects
    assert {o["metadata"]["name"] for o in objects} == {resource_name(FRAUD_API)}
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    [fetch] = pod["spec"]["initContainers"]
    [container] = pod["spec"]["containers"]
    assert fetch["image"] == container["image"] == CLUSTER["SERVING_IMAGE"]
    assert fetch["command"][-3:] == ["fraud_api:abc123", "--into", BENTO_HOME]
    assert container["command"][-5:] == [
        *("fraud_api:abc123", "--host", "0.0.0.0", "--port", str(FRAUD_API.port))
    ]
    assert container["resources"]["requests"]["cpu"] == FRAUD_API.scaling.cpu  # the HPA's 100%
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CANARY_SHARE"] == "0.1"
    assert env["BENTOML_HOME"] == BENTO_HOME
    assert env["AWS_ENDPOINT_URL"] == CLUSTER["AWS_ENDPOINT_URL"]
    assert env["SERVING_BENTO_STORE"] == CLUSTER["SERVING_BENTO_STORE"]
    assert {"secretRef": {"name": "mlops-platform-secrets"}} in container["envFrom"]
    rendered = yaml.safe_dump_all(objects)
    assert TOKEN not in rendered and CLUSTER["AWS_SECRET_ACCESS_KEY"] not in rendered


def test_the_cluster_record_reads_back_as_what_serves(cluster_serving: Any) -> None:
    deployment = served(cluster_serving, share=0.25)[0]
    deployment["metadata"]["namespace"] = "mlops"  # as the API server returns it
    release, live = recorded(deployment)
    assert (live.model_version, live.previous_version, live.bento_tag) == (
        "7",
        "6",
        "fraud_api:abc123",
    )
    assert live.url == "http://fraud-api.mlops.svc.cluster.local"
    assert release.environment["CANARY_SHARE"] == "0.25"
    assert cluster_serving.target(FRAUD_API).__class__ is KubernetesTarget
    assert RELEASE_ANNOTATION in deployment["metadata"]["annotations"]


def rolling(**status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": 3}, "spec": {"replicas": 2}, "status": status}


@pytest.mark.parametrize(
    ("deployment", "done", "failed"),
    [
        (rolling(observedGeneration=2, updatedReplicas=2, replicas=2, availableReplicas=2), 0, 0),
        (rolling(observedGeneration=3, updatedReplicas=1, replicas=3, availableReplicas=2), 0, 0),
        (rolling(observedGeneration=3, updatedReplicas=2, replicas=3, availableReplicas=2), 0, 0),
        (rolling(observedGeneration=3, updatedReplicas=2, replicas=2, availableReplicas=1), 0, 0),
        (rolling(observedGeneration=3, updatedReplicas=2, replicas=2, availableReplicas=2), 1, 0),
        (
            rolling(
                observedGeneration=3,
                updatedReplicas=1,
                replicas=3,
                availableReplicas=2,
                conditions=[
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": 'ReplicaSet "fraud-api-7c9" has timed out progressing.',
                    }
                ],
            ),
            0,
            1,
        ),
    ],
    ids=["not-observed", "old-pods-left", "old-pod-terminating", "unavailable", "done", "stuck"],
)
def test_a_rollout_is_done_only_when_every_replica_is_new_and_available(
    deployment: dict[str, Any], done: int, failed: int
) -> None:
    finished, failure = rollout(deployment)
    assert finished is bool(done)
    assert (failure is not None) is bool(failed)


def test_a_cluster_without_a_bento_store_on_s3_is_refused() -> None:
    environment = {**CLUSTER, "SERVING_BENTO_STORE": "/var/bentos"}
    with pytest.raises(ValueError, match="SERVING_BENTO_STORE"):
        Settings.from_env(environment)
    with pytest.raises(ValueError, match="SERVING_IMAGE"):
        Cluster(image="")


def test_a_local_release_keeps_serving_locally(settings: Settings) -> None:
    serving = build_resources(settings)["serving"]
    assert serving.kubernetes is None
    release = serving.release(FRAUD_API.name, "fraud_api:1", "1", 0.0)
    assert release.environment["BENTOML_HOME"] == serving.bentoml_home
    assert "127.0.0.1" in release.command


def test_deploy_k8s_is_what_the_declaration_renders(tmp_path: Path) -> None:
    header = RENDERED.read_text().splitlines()[0]
    command = shlex.split(header.split("`")[1])
    out = tmp_path / "fraud_api.yaml"
    main([*command[3 : command.index("--out")], "--out", str(out)])
    body = out.read_text().partition("\n")[2]  # the header names the output file
    assert body == RENDERED.read_text().partition("\n")[2], f"deploy/k8s is stale: run {header}"
    for manifest in yaml.safe_load_all(RENDERED.read_text()):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_a_target_serves_only_its_own_deployment() -> None:
    target = KubernetesTarget(FRAUD_API, Cluster("registry.example/mlops-platform:1"))
    with pytest.raises(ValueError, match="fraud_api"):
        target.current("other_api")


@pytest.mark.parametrize(
    "scaling",
    [
        {"min_replicas": 0},
        {"min_replicas": 3, "max_replicas": 2},
        {"target_cpu_percent": 120},
    ],
)
def test_impossible_scaling_is_refused(scaling: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="got Scaling"):
        Scaling(**scaling)


def test_the_recorded_time_is_the_switch(cluster_serving: Any) -> None:
    release = cluster_serving.release(FRAUD_API.name, "fraud_api:abc123", "7", 0.0)
    at = datetime(2026, 11, 27, 12, tzinfo=UTC)
    deployment = manifests(
        replace(FRAUD_API, port=3200), release, cluster_serving.kubernetes.cluster(), None, at
    )[0]
    deployment["metadata"]["namespace"] = "mlops"
    _, live = recorded(deployment)
    assert live.switched_at == at and live.previous_version is None and live.backend_port == 3200


class FakeDeployments:
    """The Kubernetes API as the deploy target uses it (dynamic client: server-side apply, get,
    delete), with a Deployment controller: a rollout completes unless its Bento is ``broken``,
    which never gets ready and passes its progress deadline."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.resources = self

    def get(self, api_version: str, kind: str) -> "FakeResource":  # resources.get
        return FakeResource(self, kind)

    def server_side_apply(self, resource: "FakeResource", body: dict[str, Any], **kw: Any) -> None:
        key = (kw["namespace"], resource.kind, body["metadata"]["name"])
        assert kw["field_manager"] and kw["force_conflicts"]
        before = self.objects.get(key)
        stored = json.loads(json.dumps(body))
        stored["metadata"] |= {"namespace": kw["namespace"]}
        generation = (before or {}).get("metadata", {}).get("generation", 0)
        changed = before is None or before["spec"] != stored["spec"]
        stored["metadata"]["generation"] = generation + changed
        if resource.kind == "Deployment":
            stored["spec"].setdefault("replicas", 2)
            stored["status"] = self.controller(stored)
        self.objects[key] = stored

    @staticmethod
    def controller(deployment: dict[str, Any]) -> dict[str, Any]:
        generation = deployment["metadata"]["generation"]
        [fetch] = deployment["spec"]["template"]["spec"]["initContainers"]
        if "fraud_api:broken" in fetch["command"]:
            return {
                "observedGeneration": generation,
                "replicas": 3,
                "updatedReplicas": 1,
                "availableReplicas": 2,
                "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
            }
        return {
            "observedGeneration": generation,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
        }


class FakeResource:
    def __init__(self, api: FakeDeployments, kind: str) -> None:
        self.api, self.kind = api, kind

    def get(self, name: str, namespace: str) -> Any:
        found = self.api.objects.get((namespace, self.kind, name))
        if found is None:
            raise NotFoundError(ApiException(status=404, reason="Not Found"))
        return type("ResourceInstance", (), {"to_dict": lambda _: json.loads(json.dumps(found))})()

    def delete(self, name: str, namespace: str) -> None:
        if self.api.objects.pop((namespace, self.kind, name), None) is None:
            raise NotFoundError(ApiException(status=404, reason="Not Found"))


def test_releases_roll_out_a_stuck_one_rolls_back_and_stop_removes_all(
    cluster_serving: Any,
) -> None:
    api = FakeDeployments()
    target = KubernetesTarget(FRAUD_API, cluster_serving.kubernetes.cluster(), api=api)
    assert target.current(FRAUD_API.name) is None
    broken = cluster_serving.release(FRAUD_API.name, "fraud_api:broken", "0", 0.0)
    with pytest.raises(DeployError, match="did not roll out"):
        target.deploy(broken)
    assert api.objects == {}, "a first release that never got ready leaves nothing behind"

    first = target.deploy(cluster_serving.release(FRAUD_API.name, "fraud_api:one", "1", 0.0))
    assert (first.model_version, first.previous_version) == ("1", None)
    assert {kind for _, kind, _ in api.objects} == {kind for _, kind in KINDS}
    second = target.deploy(cluster_serving.release(FRAUD_API.name, "fraud_api:two", "2", 0.0))
    assert (second.model_version, second.previous_version) == ("2", "1")

    with pytest.raises(DeployError, match="did not roll out"):
        target.deploy(broken)
    live = target.current(FRAUD_API.name)
    assert live == second, "the release before the stuck one is what the cluster serves"
    [deployment] = [o for (_, kind, _), o in api.objects.items() if kind == "Deployment"]
    assert "fraud_api:two" in deployment["spec"]["template"]["spec"]["initContainers"][0]["command"]

    target.stop(FRAUD_API.name)
    assert api.objects == {} and target.current(FRAUD_API.name) is None
    target.stop(FRAUD_API.name)  # stopping what does not run is not an error
