"""The Optuna study: its space as JSON, a small study, resuming a killed one, the Pipes entry."""

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import optuna
import pytest
from optuna.trial import FixedTrial, TrialState

from tests.training.conftest import COLUMNS, synthetic_frame
from training.data import split_by
from training.entry import ParquetSource
from training.models import Choice, FloatRange, IntRange, Parameter, Study
from training.module import Hyperparameters
from training.study import (
    MLFLOW_RUN_ATTR,
    StudyRequest,
    best_hyperparameters,
    history_plot,
    run_study,
    space_from_json,
    space_to_json,
    suggest,
)
from training.trainer import TrainerSettings
from training.tune import materialization_metadata

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    # Raised inside Dagster's Pipes client, Lightning's loader and MLflow's store, not here.
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]
SPACE: dict[str, Parameter] = {
    "learning_rate": FloatRange(1e-3, 2e-2, log=True),
    "dropout": FloatRange(0.0, 0.3),
    "embedding_dim": IntRange(2, 8, step=2),
    "hidden": Choice(((8,), (16, 8))),
}
ROWS = 1000
"""600 training rows: about 10 optimizer steps per epoch at the batch size below."""


def request_for(tmp_path: Path, trials: int, epochs: int = 3, **options: str) -> StudyRequest:
    data = tmp_path / "training_set.parquet"
    if not data.exists():
        synthetic_frame(rows=ROWS).write_parquet(data)
    return StudyRequest(
        source=ParquetSource(str(data)),
        columns=COLUMNS,
        base=Hyperparameters(hidden=(16,), batch_size=64, epochs=9),
        space=SPACE,
        metric="validation_average_precision",
        study=Study(trials=trials, epochs=epochs, warmup_epochs=1, seed=3),
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        study_name="fraud_scorer_study",
        settings=TrainerSettings(accelerator="cpu"),
        **options,
    )


def inside(space: dict[str, Parameter], params: dict) -> bool:
    for name, value in params.items():
        parameter = space[name]
        if isinstance(parameter, FloatRange):
            ok = parameter.low <= value <= parameter.high
        elif isinstance(parameter, IntRange):
            ok = value in range(parameter.low, parameter.high + 1, parameter.step)
        else:
            ok = value in parameter.values
        if not ok:
            return False
    return True


def test_the_space_survives_json_and_tuple_choices_are_drawn_as_tuples(tmp_path: Path) -> None:
    space = {**SPACE, "pos_weight": Choice((None, 5.0)), "weight_decay": FloatRange(0, 1e-3)}
    back = space_from_json(json.loads(json.dumps(space_to_json(space))))
    assert back == space
    assert back["hidden"].values == ((8,), (16, 8))
    assert all(isinstance(value, tuple) for value in back["hidden"].values)

    request = request_for(tmp_path, trials=2)
    assert StudyRequest.from_extras(json.loads(json.dumps(request.to_extras()))) == request

    trial = FixedTrial(
        {"learning_rate": 0.01, "dropout": 0.2, "embedding_dim": 4, "hidden": "[16, 8]"}
    )
    drawn = suggest(trial, request.base, SPACE, epochs=3)
    assert drawn == Hyperparameters(
        embedding_dim=4, hidden=(16, 8), dropout=0.2, learning_rate=0.01, batch_size=64, epochs=3
    )


def test_a_study_finds_parameters_inside_its_space(tmp_path: Path) -> None:
    request = request_for(tmp_path, trials=4)
    result = run_study(request, split_by(synthetic_frame(rows=ROWS)))

    assert (result.trials, result.run_now, result.complete + result.pruned) == (4, 4, 4)
    assert inside(SPACE, result.best_params)
    assert all(inside(SPACE, trial["params"]) for trial in result.history)
    complete = [t["value"] for t in result.history if t["state"] == "COMPLETE"]
    assert result.best_value == max(complete)
    assert 0 < result.best_value <= 1
    best = result.best_hyperparameters
    assert best.epochs == request.base.epochs  # the final training's, not a trial's
    assert {name: getattr(best, name) for name in SPACE} == result.best_params
    assert best_hyperparameters(request.storage, request.study_name, request.base) == best
    assert best_hyperparameters(request.storage, "no_such_study", request.base) is None

    plot = history_plot(result, tmp_path / "plot" / "history.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metadata = materialization_metadata(request, result, plot)
    assert metadata["trials"] == 4
    assert metadata["history"]["type"] == "md"
    assert metadata["history"]["raw_value"].count("\n| ") == 4
    assert metadata["best_params"]["raw_value"]["hidden"] in ([8], [16, 8])

    again = run_study(request, split_by(synthetic_frame(rows=ROWS)))
    assert (again.trials, again.run_now, again.best_trial_number) == (
        4,
        0,
        result.best_trial_number,
    )


KILLABLE_STUDY = """
import json, sys, time
import training.study as study
from training.data import split_by
from training.entry import read_rows

fit = study.fit
def slow_fit(*args, **kwargs):
    time.sleep(0.5)  # every trial is running a while: a window to kill the process in
    return fit(*args, **kwargs)
study.fit = slow_fit
request = study.StudyRequest.from_extras(json.loads(open(sys.argv[1]).read()))
study.run_study(request, split_by(read_rows(request)))
"""


def trials_in(storage: optuna.storages.RDBStorage, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials as stored now (an ``RDBStorage`` reads them afresh each time)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:  # not created yet
        return []
    return storage.get_all_trials(study_id)


def test_a_killed_study_resumes_without_redoing_finished_trials(tmp_path: Path) -> None:
    request = request_for(tmp_path, trials=6)
    extras = tmp_path / "request.json"
    extras.write_text(json.dumps(request.to_extras()))
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_STUDY, str(extras)], cwd=ROOT, stderr=subprocess.PIPE
    )
    storage = optuna.storages.RDBStorage(request.storage)
    deadline = time.monotonic() + 90
    try:
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the study never finished two trials"
            states = [t.state for t in trials_in(storage, request.study_name)]
            if sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) >= 2 and (
                TrialState.RUNNING in states
            ):
                break
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()

    before = {t.number: t for t in trials_in(storage, request.study_name)}
    finished = {n: t for n, t in before.items() if t.state.is_finished()}
    stale = [n for n, t in before.items() if t.state == TrialState.RUNNING]
    assert len(finished) >= 2 and len(stale) == 1

    result = run_study(request, split_by(synthetic_frame(rows=ROWS)))

    after = {t.number: t for t in trials_in(storage, request.study_name)}
    for number, trial in finished.items():
        same = after[number]
        assert (same.state, same.params, same.value) == (trial.state, trial.params, trial.value)
    assert after[stale[0]].state == TrialState.FAIL
    new = [t for n, t in after.items() if n not in before]
    assert all(t.params != old.params for t in new for old in finished.values())  # no re-draws
    assert result.trials == 6
    assert result.run_now == 6 - len(finished)
    assert len(after) == len(before) + result.run_now
    assert [t["state"] for t in result.history].count("FAIL") == 1


def test_the_pipes_entry_tracks_each_trial_as_a_nested_mlflow_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(
        "fraud_scorer", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    parent = client.create_run(experiment_id, run_name="study").info.run_id
    request = request_for(
        tmp_path,
        trials=3,
        epochs=2,
        mlflow_tracking_uri=tracking_uri,
        mlflow_experiment_id=experiment_id,
        mlflow_parent_run_id=parent,
    )

    @dg.asset
    def fraud_scorer_study(
        context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient
    ) -> dg.MaterializeResult:
        return pipes.run(
            command=[sys.executable, "-m", "training.tune"],
            context=context,
            extras=request.to_extras(),
            cwd=str(ROOT),
        ).get_materialize_result()

    with dg.instance_for_test() as instance:
        materialized = dg.materialize(
            [fraud_scorer_study], resources={"pipes": dg.PipesSubprocessClient()}, instance=instance
        )
    assert materialized.success
    (materialization,) = materialized.asset_materializations_for_node("fraud_scorer_study")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert (metadata["trials"], metadata["run_now"]) == (3, 3)
    assert metadata["history"].startswith("| trial | state | value | epochs | params |")
    encoded = metadata["history_plot"].removeprefix("![history](data:image/png;base64,")
    assert base64.b64decode(encoded.removesuffix(")"))[:4] == b"\x89PNG"
    assert inside(
        SPACE, {**metadata["best_params"], "hidden": tuple(metadata["best_params"]["hidden"])}
    )

    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    by_trial = {int(run.data.tags["optuna.trial_number"]): run for run in runs}
    assert sorted(by_trial) == [0, 1, 2]
    study = optuna.load_study(study_name=request.study_name, storage=request.storage)
    for trial in study.trials:
        run = by_trial[trial.number]
        assert run.info.run_name == f"trial-{trial.number}"
        assert run.info.run_id == trial.user_attrs[MLFLOW_RUN_ATTR]
        assert run.info.status == "FINISHED"
        assert json.loads(run.data.params["hidden"]) in ([8], [16, 8])
        assert run.data.metrics["best_validation_average_precision"] == trial.value
        epochs = client.get_metric_history(run.info.run_id, "validation_average_precision")
        assert [m.step for m in epochs] == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(parent, "study")}
    assert artifacts == {"study/history.png", "study/result.json"}


def test_outside_pipes_tune_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.tune import main

    monkeypatch.delenv("DAGSTER_PIPES_CONTEXT", raising=False)
    with pytest.raises(SystemExit, match="Dagster Pipes"):
        main()
