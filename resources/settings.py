"""The one place that decides local versus production configuration.

Everything is read from the environment, so switching a deployment is configuration only:

- ``PLATFORM_ENV``: ``local`` (default) or ``production``.
- ``PLATFORM_HOME``: folder for all local state (Dagster home, the Delta lake); git-ignored,
  defaults to ``.platform`` in the project root, as the Makefile's default, from any directory.
- ``LAKEHOUSE_URI``: root of the Delta lake, a local path or ``s3://bucket/prefix``; defaults to
  ``$PLATFORM_HOME/lake`` locally and is required in production.
- ``LANDING_URI``: where landing files arrive, a local path or ``s3://bucket/prefix``; defaults to
  ``$PLATFORM_HOME/landing``.
- ``AWS_ENDPOINT_URL``, ``AWS_REGION``: where an ``s3://`` lake, landing zone or Bento store is,
  passed to each as storage options. The keys (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  or a cloud identity) are not read here: delta-rs, pyarrow and boto3 take them from the
  environment themselves, so no resource's configuration, and no page of the UI, holds them.
- ``ONLINE_STORE_URL``: ``sqlite:///path.db`` or ``redis://host:port/db``; defaults to a SQLite
  file under ``$PLATFORM_HOME`` locally and is required in production.
- ``MLFLOW_TRACKING_URI``: the MLflow tracking (and registry) server or database; defaults to a
  SQLite file under ``$PLATFORM_HOME/mlflow`` locally and is required in production.
  ``MLFLOW_ARTIFACT_ROOT``: where new experiments keep artifacts (``s3://...`` in production);
  defaults to ``$PLATFORM_HOME/mlflow/artifacts`` locally, the server's own choice otherwise.
- ``OPTUNA_STORAGE``: the RDB URL of hyperparameter studies; defaults to a SQLite file under
  ``$PLATFORM_HOME`` locally and is required in production.
- ``TRAINING_ACCELERATOR``, ``TRAINING_DEVICES``, ``TRAINING_STRATEGY``: where models train (the
  ``lightning.Trainer`` arguments); ``auto`` each by default: every GPU there is, with DDP when
  there are several, else the CPU.
- ``TRAINING_IMAGE``: set, studies and training runs go to a Kubernetes pod of this image
  (through dagster-k8s' Pipes client) instead of a local subprocess, with
  ``TRAINING_GPUS`` (``nvidia.com/gpu``, default 1; Lightning then trains on all of them, one
  node), ``TRAINING_NAMESPACE`` (default: the launching pod's), ``TRAINING_NODE_SELECTOR`` (a JSON
  object), ``TRAINING_TOLERATIONS`` (a JSON list), ``TRAINING_SECRETS`` (comma-separated Secret
  names whose keys become its environment: credentials never travel as values) and
  ``TRAINING_SERVICE_ACCOUNT``.
- ``SERVING_IMAGE``: set, model services run in Kubernetes (``serving.kubernetes``): pods of
  this image (the platform image) that fetch their Bento from ``SERVING_BENTO_STORE``
  (``s3://bucket/prefix``, required then, with the lake's S3 settings), in ``SERVING_NAMESPACE``
  (default ``default``), reading the Kubernetes Secrets named in ``SERVING_SECRETS``
  (comma-separated: ``SERVING_TOKEN`` and the store's S3 keys), as
  ``SERVING_SERVICE_ACCOUNT``. Without it, services run on this machine; ``SERVING_BENTO_STORE``
  alone still publishes each built Bento.
- ``STEP_PODS``: ``true`` runs each asset step in a pod of its own (dagster-k8s'
  ``k8s_job_executor``, under the Helm chart's ``K8sRunLauncher``); else a run's steps share its
  process tree.
- ``MODEL_APPROVERS``: comma-separated people who may promote a model version to ``champion``;
  nobody by default.
- ``SERVING_TOKEN``: the bearer token model services require on ``/predict``; a service without
  one refuses to start. ``make`` generates one into ``$PLATFORM_HOME/secrets.env``.
- ``ALERT_WEBHOOK_URL``: where alerts of warning and above are posted as JSON (a Slack-style
  incoming webhook); unset, alerts go to the log only. A secret: such URLs carry their token.
- ``CANARY_SHARE``: set by the deploy target on a canary release, the challenger's share.
- ``PIPELINE_START_DATE``: first daily partition, ``YYYY-MM-DD``; defaults to 2024-01-01.
- ``PSEUDONYMIZATION_KEY``: secret for the keyed hash of PII; never has a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from resources.k8s import TrainingPod
from serving.kubernetes import Cluster

Environment = Literal["local", "production"]

DEFAULT_HOME = Path(__file__).resolve().parents[1] / ".platform"
"""The project root's ``.platform``: the same folder ``make`` uses, wherever Python starts."""

_S3_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_REGION")
"""The S3 settings that are not secrets: options of each store, values of each pod's environment."""


@dataclass(frozen=True)
class Settings:
    environment: Environment
    home: Path
    lakehouse_uri: str
    landing_uri: str
    online_store_url: str
    mlflow_tracking_uri: str = ""
    mlflow_artifact_root: str | None = None
    optuna_storage: str = ""
    model_approvers: tuple[str, ...] = ()
    training: dict[str, str] = field(default_factory=dict)
    """``lightning.Trainer`` arguments set in the environment: accelerator, devices, strategy."""
    training_pod: TrainingPod | None = None
    """Where studies and training runs go in a cluster; None trains in a local subprocess."""
    step_pods: bool = False
    """Whether each asset step runs in a pod of its own (``STEP_PODS``)."""
    serving_cluster: Cluster | None = None
    """Where model services run in a cluster; None serves them on this machine."""
    bento_store: str = ""
    """Where built Bentos are published (``SERVING_BENTO_STORE``); empty: nowhere."""
    bento_storage_options: dict[str, str] = field(default_factory=dict)
    partition_start: str = "2024-01-01"
    storage_options: dict[str, str] = field(default_factory=dict)
    """The lake's S3 options; empty for a local lake."""
    landing_storage_options: dict[str, str] = field(default_factory=dict)
    """The landing zone's S3 options; empty for a local landing folder."""
    serving_token: str = field(default="", repr=False)
    alert_webhook: bool = False
    """Whether ``ALERT_WEBHOOK_URL`` is set; its value is read by the resource, never kept here."""
    canary_share: float = 0.0
    """The share of customers a canary release sends to the challenger (``CANARY_SHARE``): each
    step of a canary is a release of the same Bento with a new share."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        environment = env.get("PLATFORM_ENV", "local")
        if environment not in ("local", "production"):
            raise ValueError(f"PLATFORM_ENV must be 'local' or 'production', got {environment!r}")
        home = Path(env.get("PLATFORM_HOME", DEFAULT_HOME)).resolve()
        for required in (
            "LAKEHOUSE_URI",
            "ONLINE_STORE_URL",
            "MLFLOW_TRACKING_URI",
            "OPTUNA_STORAGE",
        ):
            if environment == "production" and required not in env:
                raise ValueError(f"PLATFORM_ENV=production needs {required}")
        lakehouse_uri = env.get("LAKEHOUSE_URI", str(home / "lake"))
        landing_uri = env.get("LANDING_URI", str(home / "landing"))
        bento_store = env.get("SERVING_BENTO_STORE", "")
        settings = cls(
            environment=environment,  # type: ignore[arg-type]
            home=home,
            lakehouse_uri=lakehouse_uri,
            landing_uri=landing_uri,
            online_store_url=env.get("ONLINE_STORE_URL", f"sqlite:///{home / 'online.db'}"),
            mlflow_tracking_uri=env.get(
                "MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
            ),
            mlflow_artifact_root=env.get(
                "MLFLOW_ARTIFACT_ROOT",
                str(home / "mlflow" / "artifacts") if environment == "local" else None,
            ),
            optuna_storage=env.get("OPTUNA_STORAGE", f"sqlite:///{home / 'optuna.db'}"),
            model_approvers=tuple(
                name.strip() for name in env.get("MODEL_APPROVERS", "").split(",") if name.strip()
            ),
            training={
                name: env[f"TRAINING_{name.upper()}"]
                for name in ("accelerator", "devices", "strategy")
                if f"TRAINING_{name.upper()}" in env
            },
            partition_start=env.get("PIPELINE_START_DATE", "2024-01-01"),
            storage_options=s3_storage_options(lakehouse_uri, env),
            landing_storage_options=s3_storage_options(landing_uri, env),
            serving_token=env.get("SERVING_TOKEN", ""),
            alert_webhook=bool(env.get("ALERT_WEBHOOK_URL")),
            canary_share=float(env.get("CANARY_SHARE", "0")),
            step_pods=env.get("STEP_PODS", "").lower() in ("1", "true"),
            serving_cluster=cluster_from_env(env, bento_store),
            bento_store=bento_store,
            bento_storage_options=s3_storage_options(bento_store, env),
        )
        pod = TrainingPod.from_env(env, settings.service_environment())
        if pod is None:
            return settings
        return replace(
            settings, training_pod=pod, training=pod.trainer_arguments(settings.training)
        )

    def service_environment(self) -> dict[str, str]:
        """What a model service or a training pod must read as the platform does: the lake, the
        online store, the S3 endpoint. Secrets (S3 keys, the token) are not here: they reach the
        service by other means."""
        return {
            **self.landing_storage_options,
            **self.storage_options,
            **self.bento_storage_options,
            "PLATFORM_ENV": self.environment,
            "PLATFORM_HOME": str(self.home),
            "LAKEHOUSE_URI": self.lakehouse_uri,
            "LANDING_URI": self.landing_uri,
            "ONLINE_STORE_URL": self.online_store_url,
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "OPTUNA_STORAGE": self.optuna_storage,
            **({"SERVING_BENTO_STORE": self.bento_store} if self.bento_store else {}),
        }


def s3_storage_options(uri: str, env: dict[str, str]) -> dict[str, str]:
    """Where the S3 store of ``uri`` is, as delta-rs names it; nothing for a local path, and never
    the keys (see the module's docstring). A plain-http endpoint (a local S3 server) must be
    allowed explicitly."""
    if not uri.startswith("s3://"):
        return {}
    options = {var: env[var] for var in _S3_VARIABLES if var in env}
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


def cluster_from_env(env: dict[str, str], bento_store: str) -> Cluster | None:
    """The cluster ``SERVING_*`` describes; None without ``SERVING_IMAGE`` (serve locally)."""
    if not env.get("SERVING_IMAGE"):
        return None
    if not bento_store.startswith("s3://"):
        raise ValueError("SERVING_IMAGE needs SERVING_BENTO_STORE, an s3:// URI pods fetch from")
    return Cluster(
        image=env["SERVING_IMAGE"],
        namespace=env.get("SERVING_NAMESPACE") or "default",
        secrets=tuple(s.strip() for s in env.get("SERVING_SECRETS", "").split(",") if s.strip()),
        service_account=env.get("SERVING_SERVICE_ACCOUNT") or None,
    )
