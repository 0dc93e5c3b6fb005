"""The Kubernetes deploy mode: a deployment's Bento image behind a Service, scaled on CPU.

``manifests`` renders a ``Deployment`` declaration into plain Kubernetes objects (a Deployment, a
Service, a HorizontalPodAutoscaler), so the same dicts are written to ``deploy/k8s/`` for review,
validated in tests and applied by ``apply``. The image is the Bento containerized
(``bentoml containerize``); what the service must agree on with the platform comes as plain
environment or ConfigMaps, secrets (the serving token, S3 keys) only as Secret references.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from serving.deploy import DeployError
from serving.deployments import Deployment

FIELD_MANAGER = "mlops-platform"
"""Who owns the fields ``apply`` sets, as server-side apply records it."""
HTTP = "http"


def resource_name(deployment: Deployment) -> str:
    """The declaration's name as Kubernetes accepts it (DNS labels have no underscores)."""
    return deployment.name.replace("_", "-").lower()


def manifests(
    deployment: Deployment,
    image: str,
    environment: Mapping[str, str] | None = None,
    config_maps: Sequence[str] = (),
    secrets: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The Deployment, Service and HorizontalPodAutoscaler that serve ``deployment``."""
    name = resource_name(deployment)
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "mlops-platform",
        "app.kubernetes.io/component": "model-service",
    }
    scaling = deployment.scaling
    env = {**(environment or {}), "BENTOML_PORT": str(deployment.port)}
    container = {
        "name": "bento",
        "image": image,
        "ports": [{"name": HTTP, "containerPort": deployment.port}],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "envFrom": [{"configMapRef": {"name": c}} for c in config_maps]
        + [{"secretRef": {"name": s}} for s in secrets],
        "resources": {"requests": {"cpu": scaling.cpu, "memory": scaling.memory}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": HTTP}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": HTTP},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
        },
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "replicas": scaling.min_replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                # A new version serves before the old one stops, as the local supervisor does.
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [container]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "selector": {"app.kubernetes.io/name": name},
                "ports": [{"name": HTTP, "port": 80, "targetPort": HTTP}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": scaling.min_replicas,
                "maxReplicas": scaling.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": scaling.target_cpu_percent,
                            },
                        },
                    }
                ],
            },
        },
    ]


def apply(objects: Sequence[Mapping[str, Any]], namespace: str) -> None:
    """Create or update each object with server-side apply (``kubectl apply --server-side``),
    from inside the cluster or with the local kubeconfig."""
    # Imported here: the Kubernetes client is a second to load and only a cluster needs it.
    from kubernetes import client, config, dynamic
    from kubernetes.client.exceptions import ApiException

    config.load_config()
    api = dynamic.DynamicClient(client.ApiClient())
    for manifest in objects:
        resource = api.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        try:
            api.server_side_apply(
                resource,
                body=dict(manifest),
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except ApiException as error:
            raise DeployError(
                f"{manifest['kind']} {manifest['metadata']['name']}: {error.reason}"
            ) from error


def write(objects: Sequence[Mapping[str, Any]], path: Path, command: str) -> None:
    """The manifests as YAML, saying which command wrote them: the declaration is the source."""
    header = f"# Rendered by `{command}`: edit the declaration, not this file.\n"
    path.write_text(header + yaml.safe_dump_all(objects, sort_keys=False))


def main(argv: list[str] | None = None) -> None:
    """``python -m serving.kubernetes assets.deployments.fraud_api:FRAUD_API --image IMAGE
    [--config-map NAME] [--secret NAME] [--out FILE | --apply NAMESPACE]``."""
    parser = argparse.ArgumentParser(description="Render (or apply) a deployment's manifests.")
    parser.add_argument("declaration", help="module:NAME of a Deployment declaration")
    parser.add_argument("--image", required=True, help="the containerized Bento")
    parser.add_argument("--config-map", action="append", default=[], dest="config_maps")
    parser.add_argument("--secret", action="append", default=[], dest="secrets")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path)
    target.add_argument("--apply", metavar="NAMESPACE")
    argv_used = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv_used)
    module, _, attribute = args.declaration.partition(":")
    deployment = getattr(importlib.import_module(module), attribute)
    objects = manifests(deployment, args.image, config_maps=args.config_maps, secrets=args.secrets)
    if args.out:
        write(objects, args.out, shlex.join(["python", "-m", "serving.kubernetes", *argv_used]))
    else:
        apply(objects, args.apply)


if __name__ == "__main__":
    main()
