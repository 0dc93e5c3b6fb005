"""The Kubernetes deploy mode: the manifests a deployment declaration renders are valid
Kubernetes objects, and the ones in deploy/k8s/ are what the declaration renders today."""

import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from assets.deployments.fraud_api import FRAUD_API
from serving.deployments import Scaling
from serving.kubernetes import main, manifests, resource_name

KUBERNETES_VERSION = "1.29.0"
RENDERED = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "fraud_api.yaml"


def test_the_manifests_are_valid_kubernetes_objects() -> None:
    objects = manifests(
        FRAUD_API, "registry.example/fraud_api:1", {"LAKEHOUSE_URI": "s3://lake"}, ["env"], ["keys"]
    )
    for manifest in objects:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    deployment, service, autoscaler = objects
    assert {o["metadata"]["name"] for o in objects} == {resource_name(FRAUD_API)}
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [metric] = autoscaler["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert (
        metric["resource"]["target"]["averageUtilization"] == FRAUD_API.scaling.target_cpu_percent
    )
    [container] = pod["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == FRAUD_API.scaling.cpu  # the HPA's 100%
    assert container["ports"][0]["containerPort"] == FRAUD_API.port
    assert {"name": "LAKEHOUSE_URI", "value": "s3://lake"} in container["env"]
    assert {"secretRef": {"name": "keys"}} in container["envFrom"]


def test_deploy_k8s_is_what_the_declaration_renders(tmp_path: Path) -> None:
    header = RENDERED.read_text().splitlines()[0]
    command = shlex.split(header.split("`")[1])
    out = tmp_path / "fraud_api.yaml"
    main([*command[3 : command.index("--out")], "--out", str(out)])
    body = out.read_text().partition("\n")[2]  # the header names the output file
    assert body == RENDERED.read_text().partition("\n")[2], f"deploy/k8s is stale: run {header}"
    for manifest in yaml.safe_load_all(RENDERED.read_text()):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


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
