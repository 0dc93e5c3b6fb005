"""Train out of the Dagster process: ``python -m training.entry`` under Dagster Pipes.

Lightning's DDP starts the other ranks by running this same command again (with ``LOCAL_RANK``
set), so training cannot run inside the Dagster process; any Pipes client can launch it (a
subprocess locally, a pod in production) and it does not know which. Every rank reads the same
request from the Pipes context; only the first rank opens the Pipes message channel and reports
the materialization, so Dagster sees one run with one result.

The request travels as Pipes extras, built with ``TrainingRequest.to_extras`` on the Dagster side
and read back with ``from_extras`` here. Storage credentials never travel in it: an ``s3://``
lake's options come from this process's environment, as everywhere else in the platform.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl
from dagster_pipes import (
    PipesDefaultContextLoader,
    PipesEnvVarParamsLoader,
    open_dagster_pipes,
)

from training.data import Columns, split_by
from training.module import Hyperparameters
from training.trainer import FitResult, TrainerSettings, fit

if TYPE_CHECKING:
    from training.study import StudyRequest

MODEL_ARTIFACTS = "model"
"""The run's artifact folder holding what ``training.trainer.save`` wrote."""
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
"""Set by Lightning's launcher, torchrun or Slurm in a process that is not the first rank."""


@dataclass(frozen=True)
class DeltaSource:
    """A Delta table of the lake, pinned to the version the training set asset wrote."""

    root_uri: str
    table: str
    version: int | None = None


@dataclass(frozen=True)
class ParquetSource:
    path: str


@dataclass(frozen=True)
class MlflowRun:
    """A run the Dagster side opened; the URI names a server or database, never a secret."""

    tracking_uri: str
    run_id: str


def source_to_json(source: DeltaSource | ParquetSource) -> dict[str, Any]:
    """A source as Pipes extras: its fields and its ``kind``."""
    kind = "delta" if isinstance(source, DeltaSource) else "parquet"
    return {"kind": kind, **vars(source)}


def source_from_json(data: dict[str, Any]) -> DeltaSource | ParquetSource:
    source = dict(data)
    kind = source.pop("kind")
    if kind not in ("delta", "parquet"):
        raise ValueError(f"unknown training data kind {kind!r}: 'delta' or 'parquet'")
    return DeltaSource(**source) if kind == "delta" else ParquetSource(**source)


@dataclass(frozen=True)
class TrainingRequest:
    """Everything one run needs; the rows of each split are named in ``split_column``."""

    source: DeltaSource | ParquetSource
    columns: Columns
    hyperparameters: Hyperparameters
    settings: TrainerSettings
    output_dir: str
    split_column: str = "split"
    tracking: MlflowRun | None = None
    """The MLflow run the first rank logs epochs, test scores and the model files into."""

    def to_extras(self) -> dict[str, Any]:
        return {
            "source": source_to_json(self.source),
            "columns": self.columns.to_json(),
            "hyperparameters": self.hyperparameters.to_json(),
            "trainer": self.settings.to_json(),
            "output_dir": self.output_dir,
            "split_column": self.split_column,
            "tracking": vars(self.tracking) if self.tracking else None,
        }

    @classmethod
    def from_extras(cls, extras: dict[str, Any]) -> TrainingRequest:
        return cls(
            source=source_from_json(extras["source"]),
            columns=Columns.from_json(extras["columns"]),
            hyperparameters=Hyperparameters.from_json(extras["hyperparameters"]),
            settings=TrainerSettings.from_json(extras["trainer"]),
            output_dir=extras["output_dir"],
            split_column=extras.get("split_column", "split"),
            tracking=MlflowRun(**extras["tracking"]) if extras.get("tracking") else None,
        )


def read_rows(request: TrainingRequest | StudyRequest) -> pl.DataFrame:
    """Only the columns the run uses, read straight into Arrow-backed polars."""
    columns = request.columns
    wanted = [*columns.categorical, *columns.numeric, columns.label, request.split_column]
    source = request.source
    if isinstance(source, ParquetSource):
        return pl.scan_parquet(source.path).select(wanted).collect()
    # Imported here: a parquet run needs neither Dagster nor the lake's resources.
    from resources.lakehouse import Lakehouse
    from resources.settings import Settings

    # Credentials come from the deployment's settings (the launcher's environment), never from
    # the extras; another lake than the deployment's is read without any.
    settings = Settings.from_env()
    own_lake = source.root_uri == settings.lakehouse_uri
    lake = Lakehouse(
        root_uri=source.root_uri, storage_options=settings.storage_options if own_lake else {}
    )
    return lake.scan(source.table, version=source.version).select(wanted).collect()


def train(request: TrainingRequest) -> FitResult:
    frame = read_rows(request)
    return fit(
        split_by(frame, request.split_column),
        request.columns,
        request.hyperparameters,
        request.settings,
        request.output_dir,
    )


def log_to_mlflow(run: MlflowRun, result: FitResult) -> None:
    """Per-epoch metrics at their epoch, the test scores, and the saved model as ``model/``."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=run.tracking_uri, registry_uri=run.tracking_uri)
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, float(value), now, epoch.epoch)
        for epoch in result.history
        for name, value in vars(epoch).items()
        if name != "epoch"
    ]
    metrics += [
        Metric(name, float(getattr(result, name)), now, 0)
        for name in ("test_auroc", "test_average_precision", "samples_per_second")
    ]
    client.log_batch(run.run_id, metrics=metrics)
    client.log_artifacts(run.run_id, str(result.output_dir), artifact_path=MODEL_ARTIFACTS)


def materialization_metadata(request: TrainingRequest, result: FitResult) -> dict[str, Any]:
    """What the asset shows: test and last validation scores, throughput, the saved model."""
    last = result.history[-1]
    return {
        "test_auroc": result.test_auroc,
        "test_average_precision": result.test_average_precision,
        "validation_auroc": last.validation_auroc,
        "validation_average_precision": last.validation_average_precision,
        "samples_per_second": result.samples_per_second,
        "epochs": {"raw_value": result.metrics()["epochs"], "type": "json"},
        "output_dir": {"raw_value": str(result.output_dir), "type": "path"},
        "training_request": {"raw_value": request.to_extras(), "type": "json"},
        **({"mlflow_run_id": request.tracking.run_id} if request.tracking else {}),
    }


def is_first_rank(environ: dict[str, str] | None = None) -> bool:
    """Whether no launcher marked this process as a later rank."""
    # Not configuration, so not Settings: the launcher (Lightning, torchrun, SLURM) sets the rank.
    env = os.environ if environ is None else environ
    return all(env.get(name, "0") == "0" for name in RANK_VARIABLES)


def main() -> None:
    params = PipesEnvVarParamsLoader()
    if not params.is_dagster_pipes_process():
        raise SystemExit("python -m training.entry runs under Dagster Pipes: no Pipes context")
    if is_first_rank():
        with open_dagster_pipes() as pipes:
            request = TrainingRequest.from_extras(dict(pipes.extras))
            pipes.log.info(f"training on {request.source} into {request.output_dir}")
            result = train(request)
            if request.tracking:
                log_to_mlflow(request.tracking, result)
            pipes.report_asset_materialization(metadata=materialization_metadata(request, result))
        return
    # A later rank: same request, read without opening a second message channel.
    with PipesDefaultContextLoader().load_context(params.load_context_params()) as context:
        request = TrainingRequest.from_extras(dict(context["extras"]))
    train(request)


if __name__ == "__main__":
    main()
