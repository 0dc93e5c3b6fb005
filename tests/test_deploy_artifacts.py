"""deploy/: the Helm values for Dagster's chart and the code location image say what the settings
read, hold no secret, and their Kubernetes parts are valid Kubernetes objects."""

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from resources import Settings
from serving.kubernetes import KINDS

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBERNETES_VERSION = "1.29.0"
SECRET_VARIABLES = {
    "AWS_SECRET_ACCESS_KEY",
    "OPTUNA_STORAGE",
    "PSEUDONYMIZATION_KEY",
    "SERVING_TOKEN",
    "ALERT_WEBHOOK_URL",
}
"""Settings whose values are secrets (or, as a database URL, may carry one)."""
PRODUCTION_CONFIG_MAP = {  # what the mlops-platform-env ConfigMap holds in a real cluster
    "LAKEHOUSE_URI": "s3://lake/prod",
    "ONLINE_STORE_URL": "redis://redis:6379/0",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "OPTUNA_STORAGE": "postgresql://optuna@postgres/optuna",
    "SERVING_BENTO_STORE": "s3://lake/bentos",
}


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


@pytest.fixture(scope="module")
def user_code(values: dict[str, Any]) -> dict[str, Any]:
    [deployment] = values["dagster-user-deployments"]["deployments"]
    return deployment


def kubernetes_object(instance: Any, definition: str) -> None:
    """Validate against one of Kubernetes' own definitions, from kubernetes-validate's schemas."""
    definitions = schema_contents(
        f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict/_definitions.json",
        KUBERNETES_VERSION,
    )
    registry = Resource.from_contents(definitions) @ Registry()
    schema = {"$ref": f"{definitions['$id']}#/$defs/io.k8s.api.core.v1.{definition}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)


def test_runs_are_kubernetes_jobs_on_an_external_postgres(values: dict[str, Any]) -> None:
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]


def test_the_values_hold_no_secret(values: dict[str, Any], user_code: dict[str, Any]) -> None:
    assert "postgresqlPassword" not in values["postgresql"]
    assert not SECRET_VARIABLES & user_code["env"].keys()


def test_the_code_location_configures_training_pods_and_step_pods(
    user_code: dict[str, Any],
) -> None:
    assert user_code["includeConfigInLaunchedRuns"]["enabled"] is True
    settings = Settings.from_env({**PRODUCTION_CONFIG_MAP, **user_code["env"]})
    assert settings.step_pods
    assert settings.training_pod is not None
    assert settings.training_pod.secrets == tuple(s["name"] for s in user_code["envSecrets"])


def test_the_code_location_serves_models_in_the_cluster(user_code: dict[str, Any]) -> None:
    cluster = Settings.from_env({**PRODUCTION_CONFIG_MAP, **user_code["env"]}).serving_cluster
    assert cluster is not None
    assert cluster.image == user_code["env"]["SERVING_IMAGE"]
    assert cluster.secrets == tuple(s["name"] for s in user_code["envSecrets"])


def test_the_runs_may_roll_out_exactly_what_the_deploy_target_applies(
    values: dict[str, Any],
) -> None:
    role, binding = yaml.safe_load_all((DEPLOY / "k8s" / "serving-rbac.yaml").read_text())
    for manifest in (role, binding):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    applied = {(api_version.rpartition("/")[0], f"{kind.lower()}s") for api_version, kind in KINDS}
    assert granted.keys() == applied
    assert all(verbs == {"get", "create", "patch", "delete"} for verbs in granted.values())
    [subject] = binding["subjects"]
    assert subject["name"] == values["global"]["serviceAccountName"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_the_kubernetes_parts_are_kubernetes_objects(
    values: dict[str, Any], user_code: dict[str, Any]
) -> None:
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for owner in (user_code, launcher):
        for source in owner["envConfigMaps"]:
            kubernetes_object(source, "ConfigMapEnvSource")
        for source in owner["envSecrets"]:
            kubernetes_object(source, "SecretEnvSource")
    kubernetes_object(user_code["resources"], "ResourceRequirements")
    kubernetes_object(
        launcher["runK8sConfig"]["containerConfig"]["resources"], "ResourceRequirements"
    )
    with pytest.raises(jsonschema.ValidationError):
        kubernetes_object({"requests": {"cpu": "250m"}, "limit": {}}, "ResourceRequirements")


def test_the_image_serves_the_module_the_chart_loads(user_code: dict[str, Any]) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    runs = [line for line in instructions if line.startswith("RUN ")]
    assert "torch==2.13.0" in runs[0] and "pip install -e ." in runs[1]  # CPU torch first
    command = yaml.safe_load(instructions[-1].removeprefix("CMD "))
    assert command[:3] == ["dagster", "api", "grpc"]
    assert " ".join(user_code["dagsterApiGrpcArgs"]) in " ".join(command)
    assert str(user_code["port"]) in command
