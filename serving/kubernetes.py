"""The Kubernetes deploy mode: a deployment's Bento behind a Service, scaled on CPU.

``KubernetesTarget`` is the ``DeployTarget`` of a cluster: each release becomes a Deployment, a
Service and a HorizontalPodAutoscaler, applied server-side and watched until the rollout is done,
as ``kubectl rollout status`` judges it. The pods run the platform image (``deploy/Dockerfile``),
which holds BentoML and the project: an init container fetches the release's Bento from the Bento
store (``python -m resources.serving fetch``) and the service container serves it, so a
release needs no image build. The release itself, model version and canary share included, is
recorded on the Deployment, so any process asks the cluster what serves. Secrets (the serving
token, S3 keys) reach the pods only as references to Kubernetes Secrets.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from serving.deploy import Deployed, DeployError, DeployTarget, Release, bentoml_command

if TYPE_CHECKING:  # the declarations import torch (edge export); rendering needs none of it
    from serving.deployments import Deployment

FIELD_MANAGER = "mlops-platform"
"""Who owns the fields ``apply`` sets, as server-side apply records it."""
HTTP = "http"
RELEASE_ANNOTATION = "mlops-platform/release"
"""The Deployment's record of what it serves: the ``Deployed`` and the ``Release`` behind it."""
BENTO_HOME = "/var/lib/bentoml"
"""The pod's BentoML home: an emptyDir the init container imports the Bento into."""
BENTO_VOLUME = "bento-home"
SERVICE_PORT = 80
POLL_S = 2.0
DEPLOYMENT = ("apps/v1", "Deployment")
KINDS = (DEPLOYMENT, ("v1", "Service"), ("autoscaling/v2", "HorizontalPodAutoscaler"))
"""What ``manifests`` renders, one of each, all under the deployment's resource name."""


@dataclass(frozen=True)
class Cluster:
    """Where model services run in Kubernetes (``SERVING_IMAGE`` and its companions)."""

    image: str
    """The platform image (``deploy/Dockerfile``): BentoML and the project, no Bento."""
    namespace: str = "default"
    secrets: tuple[str, ...] = ()
    """Kubernetes Secrets whose keys become the pods' environment: ``SERVING_TOKEN`` and the
    Bento store's S3 keys must be among them."""
    service_account: str | None = None

    def __post_init__(self) -> None:
        if not self.image:
            raise ValueError("a cluster deployment needs the platform image (SERVING_IMAGE)")


def resource_name(deployment: Deployment) -> str:
    """The declaration's name as Kubernetes accepts it (DNS labels have no underscores)."""
    return deployment.name.replace("_", "-").lower()


def serve_command(bento_tag: str) -> tuple[str, ...]:
    """``bentoml serve`` as a pod runs it: the image's interpreter, every interface, since the
    Service is the one way in."""
    return bentoml_command(bento_tag, python="python", host="0.0.0.0")


def manifests(
    deployment: Deployment,
    release: Release,
    cluster: Cluster,
    previous_version: str | None = None,
    switched_at: datetime | None = None,
    ready_timeout_s: int = 600,
) -> list[dict[str, Any]]:
    """The Deployment, Service and HorizontalPodAutoscaler that serve ``release``."""
    name = resource_name(deployment)
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "mlops-platform",
        "app.kubernetes.io/component": "model-service",
    }
    scaling = deployment.scaling
    env = [
        {"name": k, "value": v}
        for k, v in sorted({**release.environment, "BENTOML_HOME": BENTO_HOME}.items())
    ]

    def common() -> dict[str, Any]:
        """What both containers share, built for each: a shared object is a YAML anchor."""
        return {
            "image": cluster.image,
            "env": [dict(e) for e in env],
            "envFrom": [{"secretRef": {"name": s}} for s in cluster.secrets],
            "volumeMounts": [{"name": BENTO_VOLUME, "mountPath": BENTO_HOME}],
        }

    fetch = {
        "name": "fetch-bento",
        "command": [
            *("python", "-m", "resources.serving", "fetch", release.bento_tag),
            *("--into", BENTO_HOME),
        ],
        **common(),
    }
    service = {
        "name": "bento",
        "command": list(release.argv(deployment.port)),
        **common(),
        "ports": [{"name": HTTP, "containerPort": deployment.port}],
        "resources": {"requests": {"cpu": scaling.cpu, "memory": scaling.memory}},
        "readinessProbe": {"httpGet": {"path": release.readiness_path, "port": HTTP}},
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": HTTP},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
        },
    }
    pod: dict[str, Any] = {
        "initContainers": [fetch],
        "containers": [service],
        "volumes": [{"name": BENTO_VOLUME, "emptyDir": {}}],
    }
    if cluster.service_account:
        pod["serviceAccountName"] = cluster.service_account
    record = {
        "release": release.to_dict(),
        "previous_version": previous_version,
        "switched_at": (switched_at or datetime.now(UTC)).isoformat(),
    }
    return [
        {
            "apiVersion": DEPLOYMENT[0],
            "kind": DEPLOYMENT[1],
            "metadata": {
                "name": name,
                "labels": dict(labels),
                "annotations": {RELEASE_ANNOTATION: json.dumps(record, sort_keys=True)},
            },
            # No `replicas`: the autoscaler owns it, and an apply that set it would undo its work.
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                # A new version serves before the old one stops, as the local supervisor does.
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "progressDeadlineSeconds": ready_timeout_s,
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "selector": {"app.kubernetes.io/name": name},
                "ports": [{"name": HTTP, "port": SERVICE_PORT, "targetPort": HTTP}],
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


def recorded(deployment_object: Mapping[str, Any]) -> tuple[Release, Deployed]:
    """The release a Deployment object serves, as ``manifests`` recorded it, and its ``Deployed``
    (the cluster-internal URL of its Service)."""
    metadata = deployment_object["metadata"]
    record = json.loads(metadata["annotations"][RELEASE_ANNOTATION])
    release = Release.from_dict(record["release"])
    ports = deployment_object["spec"]["template"]["spec"]["containers"][0]["ports"]
    deployed = Deployed(
        name=release.name,
        url=f"http://{metadata['name']}.{metadata['namespace']}.svc.cluster.local",
        port=SERVICE_PORT,
        bento_tag=release.bento_tag,
        model_version=release.model_version,
        backend_pid=0,
        backend_port=ports[0]["containerPort"],
        previous_version=record["previous_version"],
        switched_at=datetime.fromisoformat(record["switched_at"]),
    )
    return release, deployed


def rollout(deployment_object: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Whether the Deployment's latest spec has rolled out, and, if it never will, why:
    ``kubectl rollout status``'s rules (every replica updated and available, none of the old left,
    or the progress deadline passed)."""
    generation = deployment_object["metadata"].get("generation", 0)
    status = deployment_object.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("reason") == "ProgressDeadlineExceeded":
            return False, condition.get("message") or "progress deadline exceeded"
    if status.get("observedGeneration", 0) < generation:
        return False, None
    wanted = deployment_object["spec"].get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    done = (
        updated >= wanted
        and status.get("replicas", 0) <= updated
        and status.get("availableReplicas", 0) >= updated
    )
    return done, None


class KubernetesTarget(DeployTarget):
    """One declared deployment in one namespace of the cluster the kubeconfig (or the pod's
    service account) reaches. A release that does not roll out within ``ready_timeout_s`` is
    rolled back to the one recorded before it, whose pods never stopped serving; a first release
    that does not is removed."""

    def __init__(
        self,
        deployment: Deployment,
        cluster: Cluster,
        ready_timeout_s: int = 600,
        api: Any = None,
    ) -> None:
        self.deployment = deployment
        self.cluster = cluster
        self.ready_timeout_s = ready_timeout_s
        self._api = api
        """A ``kubernetes.dynamic.DynamicClient``; None: one from the kubeconfig, when needed."""

    def deploy(self, release: Release) -> Deployed:
        self._check(release.name)
        before = self._read()
        previous = recorded(before) if before is not None else None
        self._apply(
            release,
            previous_version=previous[1].model_version if previous else None,
        )
        try:
            self._wait()
        except DeployError:
            if previous is None:  # nothing served before: leave no pods failing to start
                self.stop(release.name)
            else:
                self._apply(previous[0], previous[1].previous_version, previous[1].switched_at)
            raise
        live = self.current(release.name)
        if live is None:
            raise DeployError(f"{release.name}: its Deployment disappeared after rolling out")
        return live

    def current(self, name: str) -> Deployed | None:
        self._check(name)
        found = self._read()
        return recorded(found)[1] if found is not None else None

    def stop(self, name: str) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        self._check(name)
        for api_version, kind in KINDS:
            try:
                self._resource(api_version, kind).delete(
                    name=resource_name(self.deployment), namespace=self.cluster.namespace
                )
            except NotFoundError:
                continue

    def _check(self, name: str) -> None:
        if name != self.deployment.name:
            raise ValueError(f"this target serves {self.deployment.name!r}, not {name!r}")

    def _apply(
        self,
        release: Release,
        previous_version: str | None,
        switched_at: datetime | None = None,
    ) -> None:
        """Create or update each object with server-side apply (``kubectl apply
        --server-side``), from inside the cluster or with the local kubeconfig."""
        from kubernetes.client.exceptions import ApiException

        objects = manifests(
            self.deployment,
            release,
            self.cluster,
            previous_version,
            switched_at,
            self.ready_timeout_s,
        )
        for manifest in objects:
            try:
                self._client().server_side_apply(
                    self._resource(manifest["apiVersion"], manifest["kind"]),
                    body=manifest,
                    namespace=self.cluster.namespace,
                    field_manager=FIELD_MANAGER,
                    force_conflicts=True,
                )
            except ApiException as error:
                raise DeployError(
                    f"{manifest['kind']} {manifest['metadata']['name']}: {error.reason}"
                ) from error

    def _wait(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            found = self._read()
            if found is None:
                raise DeployError(f"{self.deployment.name}: its Deployment disappeared")
            done, failure = rollout(found)
            if done:
                return
            if failure is not None or time.monotonic() > deadline:
                raise DeployError(
                    f"{self.deployment.name} did not roll out: {failure or 'timed out'}"
                )
            time.sleep(POLL_S)

    def _read(self) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            found = self._resource(*DEPLOYMENT).get(
                name=resource_name(self.deployment), namespace=self.cluster.namespace
            )
        except NotFoundError:
            return None
        return found.to_dict()

    def _resource(self, api_version: str, kind: str) -> Any:
        return self._client().resources.get(api_version=api_version, kind=kind)

    def _client(self) -> Any:
        if self._api is None:
            # Imported here: the Kubernetes client is a second to load and only a cluster needs it.
            from kubernetes import client, config, dynamic

            config.load_config()
            self._api = dynamic.DynamicClient(client.ApiClient())
        return self._api


def write(objects: Sequence[Mapping[str, Any]], path: Path, command: str) -> None:
    """The manifests as YAML, saying which command wrote them: the declaration is the source."""
    header = f"# Rendered by `{command}`: edit the declaration, not this file.\n"
    path.write_text(header + yaml.safe_dump_all(objects, sort_keys=False))


def main(argv: list[str] | None = None) -> None:
    """``python -m serving.kubernetes assets.deployments.fraud_api:FRAUD_API --image IMAGE
    --bento TAG --model-version V [--secret NAME] [--env NAME=VALUE] --out FILE``: the manifests
    the Kubernetes target would apply for that release, to review."""
    parser = argparse.ArgumentParser(description="Render a deployment's manifests for review.")
    parser.add_argument("declaration", help="module:NAME of a Deployment declaration")
    parser.add_argument("--image", required=True, help="the platform image")
    parser.add_argument("--bento", required=True, help="the Bento tag the release serves")
    parser.add_argument("--model-version", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--secret", action="append", default=[], dest="secrets")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE, not a secret")
    parser.add_argument("--out", type=Path, required=True)
    argv_used = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv_used)
    module, _, attribute = args.declaration.partition(":")
    deployment = getattr(importlib.import_module(module), attribute)
    release = Release(
        name=deployment.name,
        bento_tag=args.bento,
        model_version=args.model_version,
        command=serve_command(args.bento),
        environment=dict(pair.split("=", 1) for pair in args.env),
    )
    cluster = Cluster(args.image, args.namespace, tuple(args.secrets))
    # A fixed time: the rendered file changes only when the declaration does.
    objects = manifests(deployment, release, cluster, switched_at=datetime(2024, 1, 1, tzinfo=UTC))
    write(objects, args.out, shlex.join(["python", "-m", "serving.kubernetes", *argv_used]))


if __name__ == "__main__":
    main()
