"""MLflow tracking and the model registry, as a Dagster resource."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import Field

from training.registry import AliasChange, ModelRegistry


class MlflowTracking(dg.ConfigurableResource):
    """Where runs, artifacts and registered models live: a SQLite file locally, a server in
    production.

    A thin wrapper over ``MlflowClient`` rather than dagster-mlflow, whose ``mlflow_tracking`` is
    an old-style ``@resource`` (not a ``ConfigurableResource``), still in beta, that starts one
    global MLflow run per Dagster run; here each asset logs through an explicit client.
    """

    tracking_uri: str = Field(description="MLflow tracking and registry URI (sqlite:///, http://).")
    artifact_root: str | None = Field(
        default=None,
        description="Folder or s3:// prefix new experiments keep artifacts under; None lets the "
        "tracking server decide.",
    )

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        """The experiment ``name``, created on first use under ``artifact_root``.

        Without an explicit location, a SQLite-backed MLflow puts artifacts in ``./mlruns`` of
        whatever directory the process runs in. Two processes may race to create it; the loser
        reads the winner's.
        """
        client = self.client()
        existing = client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        location = (
            None if self.artifact_root is None else f"{self.artifact_root.rstrip('/')}/{name}"
        )
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        created = client.get_experiment_by_name(name)
        if created is None:
            raise RuntimeError(f"MLflow experiment {name!r} exists and yet cannot be read")
        return created.experiment_id

    def registry(self, audit: Callable[[AliasChange], None]) -> ModelRegistry:
        """The model registry, reporting every alias move to ``audit``."""
        return ModelRegistry(self.client(), audit)
