"""Training as a Kubernetes pod: the pod the training assets launch through dagster-k8s' Pipes
client in a cluster, and what their own step pods ask of the ``k8s_job_executor``.

Plain data read from the environment by ``Settings.from_env``; the Pipes client and the executor
are dagster-k8s' own, only their arguments are built here, so nothing imports the Kubernetes
client until a cluster is configured. Secret values never appear: the pod names Kubernetes
Secrets and takes their keys as its environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
K8S_CONFIG_TAG = "dagster-k8s/config"
"""The op tag the ``k8s_job_executor`` reads a step pod's settings from."""
STEP_RESOURCES = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
"""The step pod opens the MLflow run, waits on the training pod and registers the version: no
GPU and little memory, so it does not hold a GPU node while the pod it launched trains."""
SHARED_MEMORY = "dshm"
LABELS = {"app.kubernetes.io/part-of": "mlops-platform", "app.kubernetes.io/component": "training"}


@dataclass(frozen=True)
class TrainingPod:
    """One pod on one node with ``gpus`` GPUs: Lightning trains with ``devices=gpus`` and
    ``num_nodes=1`` (DDP across the GPUs when there are several)."""

    image: str
    gpus: int = 1
    namespace: str | None = None
    """None: the namespace of the step pod that launches it."""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    secrets: tuple[str, ...] = ()
    """Kubernetes Secrets whose keys become the pod's environment (S3 keys, database passwords)."""
    service_account: str | None = None
    """The identity the pod reads the lake and writes MLflow artifacts with, where the cloud
    grants access by service account."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """The settings' service environment: where the lake, MLflow and the studies are."""

    def __post_init__(self) -> None:
        if not self.image:
            raise ValueError("a training pod needs an image (TRAINING_IMAGE)")
        if self.gpus < 1:
            raise ValueError(f"a training pod trains on at least one GPU, got {self.gpus}")

    @classmethod
    def from_env(cls, env: Mapping[str, str], environment: Mapping[str, str]) -> TrainingPod | None:
        """The pod ``TRAINING_*`` describes; None without ``TRAINING_IMAGE`` (train in a local
        subprocess)."""
        if not env.get("TRAINING_IMAGE"):
            return None
        tolerations = _json(env, "TRAINING_TOLERATIONS", [])
        node_selector = _json(env, "TRAINING_NODE_SELECTOR", {})
        if not isinstance(tolerations, list) or not isinstance(node_selector, dict):
            raise ValueError(
                "TRAINING_TOLERATIONS must be a JSON list, TRAINING_NODE_SELECTOR a JSON object"
            )
        return cls(
            image=env["TRAINING_IMAGE"],
            gpus=int(env.get("TRAINING_GPUS", "1")),
            namespace=env.get("TRAINING_NAMESPACE") or None,
            node_selector={str(k): str(v) for k, v in node_selector.items()},
            tolerations=tuple(tolerations),
            secrets=tuple(
                s.strip() for s in env.get("TRAINING_SECRETS", "").split(",") if s.strip()
            ),
            service_account=env.get("TRAINING_SERVICE_ACCOUNT") or None,
            environment=dict(environment),
        )

    def trainer_arguments(self, declared: Mapping[str, str]) -> dict[str, str]:
        """The ``lightning.Trainer`` arguments with every GPU of the pod; an accelerator or a
        device count set beside the pod that disagrees with it is a mistake, not a choice."""
        pod = {"accelerator": "gpu", "devices": str(self.gpus)}
        for name, value in pod.items():
            if declared.get(name, value) != value:
                raise ValueError(
                    f"TRAINING_{name.upper()}={declared[name]!r} contradicts the training pod's "
                    f"{self.gpus} GPU(s): leave it unset"
                )
        return {**declared, **pod}

    def command(self, module: str) -> list[str]:
        """``python -m <module>`` with the image's own interpreter, which need not be the path of
        the one Dagster runs in."""
        return ["python", "-m", module]

    def pod_spec(self) -> dict[str, Any]:
        """The ``base_pod_spec`` of ``PipesK8sClient.run``: the first container is the one Pipes
        talks to; image, command and the Pipes variables are added by dagster-k8s."""
        container: dict[str, Any] = {
            "name": "training",
            "resources": {"limits": {GPU_RESOURCE: str(self.gpus)}},
            "env": [{"name": k, "value": v} for k, v in sorted(self.environment.items())],
            "envFrom": [{"secretRef": {"name": name}} for name in self.secrets],
            "volumeMounts": [{"name": SHARED_MEMORY, "mountPath": "/dev/shm"}],
        }
        spec: dict[str, Any] = {
            "containers": [container],
            "nodeSelector": dict(self.node_selector),
            "tolerations": [dict(t) for t in self.tolerations],
            # DDP's ranks exchange tensors through shared memory; a container's 64 MiB is too few.
            "volumes": [{"name": SHARED_MEMORY, "emptyDir": {"medium": "Memory"}}],
        }
        if self.service_account:
            spec["serviceAccountName"] = self.service_account
        return spec

    def pod_meta(self) -> dict[str, Any]:
        return {"labels": dict(LABELS)}

    def step_tags(self) -> dict[str, Any]:
        """The training assets' ``op_tags``: settings of their step pods under the
        ``k8s_job_executor``, which launch the training pod and wait for it."""
        return {K8S_CONFIG_TAG: {"container_config": {"resources": STEP_RESOURCES}}}


def _json(env: Mapping[str, str], name: str, default: Any) -> Any:
    try:
        return json.loads(env[name]) if env.get(name) else default
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} is not valid JSON: {error}") from error
