from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import dagster as dg
import pytest

from resources.tracking import MlflowTracking
from tests.mlflow_fixtures import log_model, mlflow_tracking_fixture, unique  # noqa: F401


def test_experiment_artifacts_go_under_the_artifact_root_not_the_working_directory(
    mlflow_tracking: MlflowTracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = unique("experiment")
    experiment_id = mlflow_tracking.experiment_id(name)

    assert mlflow_tracking.experiment_id(name) == experiment_id
    location = mlflow_tracking.client().get_experiment(experiment_id).artifact_location
    assert location == f"{mlflow_tracking.artifact_root}/{name}"
    run = mlflow_tracking.client().create_run(experiment_id)
    (tmp_path / "notes.txt").write_text("hello")
    mlflow_tracking.client().log_artifact(run.info.run_id, str(tmp_path / "notes.txt"))
    assert (Path(location) / run.info.run_id / "artifacts" / "notes.txt").read_text() == "hello"
    assert not (tmp_path / "mlruns").exists()


def test_processes_racing_to_create_an_experiment_all_get_the_same_one(
    mlflow_tracking: MlflowTracking,
) -> None:
    name = unique("raced")
    start = Barrier(4)

    def create(_: int) -> str:
        start.wait()
        return MlflowTracking(tracking_uri=mlflow_tracking.tracking_uri).experiment_id(name)

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(create, range(4)))

    assert len(ids) == 1


def test_assets_reach_the_registry_through_the_resource(
    mlflow_tracking: MlflowTracking, tmp_path: Path
) -> None:
    name = unique("model")
    run_id = log_model(mlflow_tracking, tmp_path / "model")

    @dg.asset
    def registered(tracking: MlflowTracking) -> str:
        return tracking.registry(lambda change: None).register(name, run_id)

    result = dg.materialize([registered], resources={"tracking": mlflow_tracking})

    assert result.output_for_node("registered") == "1"
