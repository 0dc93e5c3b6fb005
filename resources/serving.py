"""Where deployments go: Bentos built into a local store, served by a deploy target.

Locally a ``LocalTarget`` serves each deployment from this machine's Bento store. With a cluster
configured (``SERVING_IMAGE``), each built Bento is published to the Bento store in object storage
and a ``KubernetesTarget`` rolls it out; the deployment assets call the same methods either way.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pyarrow.fs import FileSystem
from pydantic import Field

from resources.object_store import open_filesystem
from resources.settings import Settings
from serving import bento_store
from serving.deploy import DeployTarget, LocalTarget, Release, bentoml_command
from serving.kubernetes import Cluster, KubernetesTarget, serve_command

if TYPE_CHECKING:
    from serving.deployments import Deployment


class KubernetesServing(dg.Config):
    """A cluster's model services: the platform image they run, where, and the Secrets they read
    (``SERVING_TOKEN`` and the Bento store's S3 keys must be among them)."""

    image: str
    namespace: str = "default"
    secrets: list[str] = Field(default_factory=list)
    service_account: str | None = None

    def cluster(self) -> Cluster:
        return Cluster(self.image, self.namespace, tuple(self.secrets), self.service_account)


class ServingTarget(dg.ConfigurableResource):
    """``bentoml build`` into ``bentoml_home``, published to ``bento_store`` when there is one,
    and served by a ``LocalTarget`` under ``state_dir`` or, with ``kubernetes``, in a cluster.

    A local backend inherits the environment of the supervisor that starts it, secrets included
    (S3 keys); ``environment`` adds the settings the service must agree on with the platform
    (lake, online store), written out so a supervisor started earlier cannot serve stale ones. A
    cluster's pods get the same settings, and their secrets from Kubernetes Secrets.
    """

    bentoml_home: str = Field(description="BentoML's home: the local Bento store.")
    state_dir: str = Field(description="Supervisor state and logs, one folder per deployment.")
    host: str = Field(default="127.0.0.1", description="Address the stable port listens on.")
    token: str = Field(description="Bearer token the service requires (SERVING_TOKEN).")
    environment: dict[str, str] = Field(
        default_factory=dict, description="Settings the service reads (lake, online store)."
    )
    bento_store: str = Field(
        default="", description="Folder or s3://bucket/prefix Bentos are published to."
    )
    bento_storage_options: dict[str, str] = Field(
        default_factory=dict, description="S3 options of the Bento store, as the lake's."
    )
    kubernetes: KubernetesServing | None = Field(
        default=None, description="Serve in this cluster instead of on this machine."
    )

    def build(self, context_dir: Path) -> str:
        """Build the Bento in ``context_dir`` (a ``bentofile.yaml`` and its sources), publish it
        to the Bento store if there is one; its tag."""
        built = bento_store.bentoml(
            ["build", str(context_dir), "--output", "tag"], self.bentoml_home, cwd=context_dir
        )
        tag = built.strip().splitlines()[-1].removeprefix("__tag__:")
        if self.bento_store:
            bento_store.publish(tag, self.bentoml_home, *self._store())
        return tag

    def release(self, name: str, bento_tag: str, model_version: str, share: float) -> Release:
        environment = {**self.environment, "CANARY_SHARE": repr(share)}
        if self.kubernetes is None:
            environment |= {
                "BENTOML_HOME": self.bentoml_home,
                "BENTOML_DO_NOT_TRACK": "true",
                "SERVING_TOKEN": self.token,
            }
        return Release(
            name=name,
            bento_tag=bento_tag,
            model_version=model_version,
            command=self.command(bento_tag),
            environment=environment,
        )

    def command(self, bento_tag: str) -> tuple[str, ...]:
        """What serves a Bento: ``bentoml serve`` in this interpreter's environment, or in the
        platform image's."""
        if self.kubernetes is not None:
            return serve_command(bento_tag)
        return bentoml_command(bento_tag)

    def target(self, deployment: Deployment) -> DeployTarget:
        if self.kubernetes is not None:
            return KubernetesTarget(deployment, self.kubernetes.cluster())
        return LocalTarget(Path(self.state_dir), deployment.port, host=self.host)

    def _store(self) -> tuple[FileSystem, str]:
        return open_filesystem(self.bento_store, self.bento_storage_options)


def main(argv: list[str] | None = None) -> None:
    """``python -m resources.serving fetch TAG --into DIR``: import a Bento from the configured
    Bento store into the BentoML home ``DIR`` (a service pod's init container)."""
    parser = argparse.ArgumentParser(description="Fetch a Bento from the Bento store.")
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("bento_tag")
    parser.add_argument("--into", required=True, help="the BentoML home to import into")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if not settings.bento_store:
        raise SystemExit("no Bento store is configured: set SERVING_BENTO_STORE")
    filesystem, root = open_filesystem(settings.bento_store, settings.bento_storage_options)
    bento_store.fetch(args.bento_tag, args.into, filesystem, root)


if __name__ == "__main__":
    main()
