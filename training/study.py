"""The hyperparameter study: Optuna trials of short trainings, pruned early, resumable.

A study is an Optuna study in an RDB storage (SQLite locally, Postgres in production), so a
process that dies mid-way loses only its running trial: ``run_study`` on the same storage and
name marks that trial failed and runs only the trials still missing; finished trials are never
redone. Each trial trains with ``training.trainer.fit`` on one device for ``Study.epochs``
epochs and reports the validation metric after every epoch, so the median pruner can stop a
trial that trails the others. The value of a trial is its best epoch's metric.

Trials can be MLflow runs nested under the run the Dagster side opened for the study. Nothing
here imports Dagster; ``training.tune`` is the Pipes entry point around it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import optuna
from optuna.trial import FrozenTrial, TrialState
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

from training.data import Columns, Splits
from training.entry import DeltaSource, ParquetSource, source_from_json, source_to_json
from training.models import METRICS, Choice, FloatRange, IntRange, Parameter, Study
from training.module import EpochMetrics, FraudScorer, Hyperparameters
from training.trainer import TrainerSettings, fit

if TYPE_CHECKING:
    from mlflow import MlflowClient

SPACE_ATTR = "search_space"
"""Study attribute holding the space the study searches, to read its parameters back."""
MLFLOW_RUN_ATTR = "mlflow_run_id"
"""Trial attribute naming the trial's MLflow run, to close it if its process died."""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def space_to_json(space: Mapping[str, Parameter]) -> dict[str, dict[str, Any]]:
    """The space as plain JSON; tuples (hidden layouts) become lists."""
    encoded: dict[str, dict[str, Any]] = {}
    for name, parameter in space.items():
        if isinstance(parameter, FloatRange):
            encoded[name] = {"kind": "float", **asdict(parameter)}
        elif isinstance(parameter, IntRange):
            encoded[name] = {"kind": "int", **asdict(parameter)}
        else:
            encoded[name] = {"kind": "choice", "values": _plain(parameter.values)}
    return encoded


def space_from_json(data: Mapping[str, Mapping[str, Any]]) -> dict[str, Parameter]:
    """The space ``space_to_json`` wrote; every list inside a choice comes back a tuple."""
    space: dict[str, Parameter] = {}
    for name, encoded in data.items():
        values = dict(encoded)
        kind = values.pop("kind")
        if kind == "float":
            space[name] = FloatRange(**values)
        elif kind == "int":
            space[name] = IntRange(**values)
        elif kind == "choice":
            space[name] = Choice(tuple(_tuples(value) for value in values["values"]))
        else:
            raise ValueError(f"parameter {name!r}: unknown kind {kind!r}: float, int or choice")
    return space


def suggest(
    trial: optuna.Trial, base: Hyperparameters, space: Mapping[str, Parameter], epochs: int
) -> Hyperparameters:
    """``base`` with each parameter of ``space`` drawn by the trial, trained ``epochs`` epochs."""
    drawn: dict[str, Any] = {}
    for name, parameter in space.items():
        if isinstance(parameter, FloatRange):
            drawn[name] = trial.suggest_float(
                name, parameter.low, parameter.high, log=parameter.log
            )
        elif isinstance(parameter, IntRange):
            drawn[name] = trial.suggest_int(
                name, parameter.low, parameter.high, step=parameter.step
            )
        else:
            stored = trial.suggest_categorical(name, _stored_choices(parameter))
            drawn[name] = _chosen(parameter, stored)
    return replace(base, **{**drawn, "epochs": epochs})


@dataclass(frozen=True)
class StudyRequest:
    """Everything one study needs; travels as Pipes extras like ``TrainingRequest``.

    ``storage`` is an RDB URL (``sqlite:///...``, ``postgresql://user@host/db``); keep passwords
    out of it (libpq reads ``PGPASSWORD`` from the environment). ``settings`` says where trials
    train, always on one device: DDP is for the final training. The ``mlflow_*`` ids, all given
    or none, make each trial a run nested under the study's parent run.
    """

    source: DeltaSource | ParquetSource
    columns: Columns
    base: Hyperparameters
    space: Mapping[str, Parameter]
    metric: str
    study: Study
    storage: str
    study_name: str
    settings: TrainerSettings = field(default_factory=TrainerSettings)
    mlflow_tracking_uri: str | None = None
    mlflow_experiment_id: str | None = None
    mlflow_parent_run_id: str | None = None
    split_column: str = "split"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"study metric must be one of {METRICS}, not {self.metric!r}")
        if "epochs" in self.space:
            raise ValueError("epochs cannot be searched: every trial trains Study.epochs epochs")
        ids = (self.mlflow_tracking_uri, self.mlflow_experiment_id, self.mlflow_parent_run_id)
        if any(ids) and not all(ids):
            raise ValueError("give all of the mlflow tracking URI, experiment and parent run ids")

    def to_extras(self) -> dict[str, Any]:
        return {
            "source": source_to_json(self.source),
            "columns": self.columns.to_json(),
            "base": self.base.to_json(),
            "space": space_to_json(self.space),
            "metric": self.metric,
            "study": asdict(self.study),
            "storage": self.storage,
            "study_name": self.study_name,
            "trainer": self.settings.to_json(),
            "mlflow_tracking_uri": self.mlflow_tracking_uri,
            "mlflow_experiment_id": self.mlflow_experiment_id,
            "mlflow_parent_run_id": self.mlflow_parent_run_id,
            "split_column": self.split_column,
        }

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> StudyRequest:
        return cls(
            source=source_from_json(extras["source"]),
            columns=Columns.from_json(extras["columns"]),
            base=Hyperparameters.from_json(extras["base"]),
            space=space_from_json(extras["space"]),
            metric=extras["metric"],
            study=Study(**extras["study"]),
            storage=extras["storage"],
            study_name=extras["study_name"],
            settings=TrainerSettings.from_json(extras["trainer"]),
            mlflow_tracking_uri=extras.get("mlflow_tracking_uri"),
            mlflow_experiment_id=extras.get("mlflow_experiment_id"),
            mlflow_parent_run_id=extras.get("mlflow_parent_run_id"),
            split_column=extras.get("split_column", "split"),
        )


@dataclass(frozen=True)
class StudyResult:
    """The study after a call of ``run_study``: its best trial and every trial's outcome."""

    best_params: dict[str, Any]
    """The best trial's values of the searched hyperparameters."""
    best_value: float
    best_trial_number: int
    trials: int
    """Finished trials (complete or pruned), this call's and earlier calls'."""
    run_now: int
    """Trials this call ran."""
    pruned: int
    complete: int
    history: list[dict[str, Any]]
    """Every trial: ``number``, ``state``, ``value``, ``epochs`` it trained, ``params``."""
    best_hyperparameters: Hyperparameters
    """The base with the best trial's values and the base's epochs: the final training's."""

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "best_params": _plain(self.best_params),
            "history": _plain(self.history),
            "best_hyperparameters": self.best_hyperparameters.to_json(),
        }


def run_study(
    request: StudyRequest, splits: Splits, *, pruner: optuna.pruners.BasePruner | None = None
) -> StudyResult:
    """Run the trials the study still lacks, and read the whole study back.

    Trials left running by a process that died are marked failed (nothing will finish them),
    then ``Study.trials`` minus the finished ones run. The study runs in one process at a time:
    a trial running elsewhere would be marked failed too. ``pruner`` replaces the median pruner
    (the benchmark's anchor runs the same study with ``NopPruner``).
    """
    plan = request.study
    study = optuna.create_study(
        study_name=request.study_name,
        storage=request.storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=plan.seed),
        # Epoch k reports step k - 1: the pruner may stop a trial once warmup_epochs have run.
        pruner=pruner
        or optuna.pruners.MedianPruner(
            n_startup_trials=plan.startup_trials, n_warmup_steps=plan.warmup_epochs - 1
        ),
    )
    _claim_space(study, request.space)
    runs = _TrialRuns.of(request)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        if runs is not None and MLFLOW_RUN_ATTR in trial.user_attrs:
            runs.client.set_terminated(trial.user_attrs[MLFLOW_RUN_ATTR], "FAILED")
    earlier = study.get_trials(deepcopy=False)
    if earlier:
        # The sampler's random state restarts with the process: the same seed would draw the
        # first trials' parameters again.
        study.sampler = optuna.samplers.TPESampler(seed=plan.seed + len(earlier))
    remaining = plan.trials - sum(trial.state in FINISHED for trial in earlier)
    if remaining > 0:
        with _lightning_notices_off():
            study.optimize(_objective(request, splits, runs), n_trials=remaining)
    return _result(study, request.base, request.space, run_now=max(remaining, 0))


def best_hyperparameters(
    storage: str, study_name: str, base: Hyperparameters
) -> Hyperparameters | None:
    """``base`` with the best trial's values (and its own epochs); None without a complete trial."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no study of that name
        return None
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    space = space_from_json(study.user_attrs[SPACE_ATTR])
    return _apply(base, _decoded(space, study.best_trial.params))


def history_plot(study: optuna.Study | StudyResult, path: Path) -> Path:
    """A PNG of each finished trial's value by trial number, and the best so far."""
    # Imported here: trials never draw, and a study's process should not wait for matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(study, StudyResult):
        points = [(t["number"], t["state"], t["value"]) for t in study.history]
    else:
        points = [(t.number, t.state.name, t.value) for t in study.get_trials(deepcopy=False)]
    figure = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(figure)  # headless: no pyplot, no GUI backend
    axes = figure.add_subplot()
    for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
        shown = [(n, v) for n, s, v in points if s == state and v is not None]
        if shown:
            axes.scatter(*zip(*shown, strict=True), marker=marker, label=state.lower())
    best: list[tuple[int, float]] = []
    for number, state, value in points:
        if state == "COMPLETE" and value is not None and (not best or value > best[-1][1]):
            best.append((number, value))
    if best:
        numbers, values = zip(*best, strict=True)
        axes.step([*numbers, points[-1][0]], [*values, values[-1]], where="post", label="best")
    axes.set_xlabel("trial")
    axes.set_ylabel("value")
    axes.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


class _Epochs(L.Callback):
    """The module's per-epoch metrics, kept for after ``fit`` even when pruning raised out of it."""

    def __init__(self) -> None:
        self.epochs: list[EpochMetrics] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, FraudScorer)
        self.epochs = pl_module.history  # the module appends to it after each validation


@dataclass(frozen=True)
class _TrialRuns:
    """Each trial as an MLflow run nested under the study's parent run."""

    client: MlflowClient  # imported only when a study is tracked
    experiment_id: str
    parent_run_id: str

    @classmethod
    def of(cls, request: StudyRequest) -> _TrialRuns | None:
        if request.mlflow_tracking_uri is None:
            return None
        from mlflow import MlflowClient

        assert request.mlflow_experiment_id and request.mlflow_parent_run_id
        client = MlflowClient(tracking_uri=request.mlflow_tracking_uri)
        return cls(client, request.mlflow_experiment_id, request.mlflow_parent_run_id)

    def start(self, trial: optuna.Trial, params: Mapping[str, Any]) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial.number}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "optuna.trial_number": str(trial.number),
            },
        )
        run_id = run.info.run_id
        trial.set_user_attr(MLFLOW_RUN_ATTR, run_id)
        self.client.log_batch(
            run_id, params=[Param(name, json.dumps(_plain(v))) for name, v in params.items()]
        )
        return run_id

    def finish(self, run_id: str, epochs: Sequence[EpochMetrics], metric: str, status: str) -> None:
        """Per-epoch metrics at step ``epoch``, the best epoch's ``metric``, the run's status."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(name, float(value), now, epoch.epoch)
            for epoch in epochs
            for name, value in asdict(epoch).items()
            if name != "epoch"
        ]
        if epochs:
            metrics.append(Metric(f"best_{metric}", _best(epochs, metric), now, 0))
        self.client.log_batch(run_id, metrics=metrics)
        self.client.set_terminated(run_id, status)


def _objective(
    request: StudyRequest, splits: Splits, runs: _TrialRuns | None
) -> Callable[[optuna.Trial], float]:
    # One device, whatever the final training uses: a trial is short and DDP relaunches scripts.
    settings = replace(request.settings, devices=1, strategy="auto", num_nodes=1)

    def objective(trial: optuna.Trial) -> float:
        hyperparameters = suggest(trial, request.base, request.space, request.study.epochs)
        params = {name: getattr(hyperparameters, name) for name in request.space}
        run_id = runs.start(trial, params) if runs is not None else None
        history = _Epochs()
        # On one device the callback raises TrialPruned out of ``fit`` itself; its
        # ``check_pruned`` is for DDP, where the ranks only agree to stop.
        pruning = PyTorchLightningPruningCallback(trial, monitor=request.metric)
        status = "FAILED"
        try:
            fit(
                splits,
                request.columns,
                hyperparameters,
                settings,
                None,
                callbacks=[history, pruning],
            )
            status = "FINISHED"
        except optuna.TrialPruned:
            status = "KILLED"
            raise
        finally:
            if runs is not None and run_id is not None:
                runs.finish(run_id, history.epochs, request.metric, status)
        return _best(history.epochs, request.metric)

    return objective


@contextmanager
def _lightning_notices_off() -> Iterator[None]:
    """Lightning's notices of each new Trainer (devices, a tip, epochs reached) would bury
    Optuna's line per trial; its warnings still show."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _best(epochs: Sequence[EpochMetrics], metric: str) -> float:
    return max(getattr(epoch, metric) for epoch in epochs)


def _result(
    study: optuna.Study, base: Hyperparameters, space: Mapping[str, Parameter], run_now: int
) -> StudyResult:
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial
    best_params = _decoded(space, best.params)
    return StudyResult(
        best_params=best_params,
        best_value=float(best.value),
        best_trial_number=best.number,
        trials=sum(t.state in FINISHED for t in trials),
        run_now=run_now,
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        complete=sum(t.state == TrialState.COMPLETE for t in trials),
        history=[_row(trial, space) for trial in trials],
        best_hyperparameters=_apply(base, best_params),
    )


def _row(trial: FrozenTrial, space: Mapping[str, Parameter]) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "epochs": len(trial.intermediate_values),
        "params": _decoded(space, trial.params),
    }


def _apply(base: Hyperparameters, params: Mapping[str, Any]) -> Hyperparameters:
    return replace(base, **{**params, "epochs": base.epochs})


def _claim_space(study: optuna.Study, space: Mapping[str, Parameter]) -> None:
    """Record the space a study searches; refuse to go on with a different one."""
    encoded = space_to_json(space)
    recorded = study.user_attrs.get(SPACE_ATTR)
    if recorded is None:
        study.set_user_attr(SPACE_ATTR, encoded)
    elif recorded != encoded:
        raise ValueError(
            f"study {study.study_name!r} searched another space {recorded}; "
            "give a new study name to search this one"
        )


def _stored_choices(choice: Choice) -> tuple[Any, ...]:
    """What Optuna stores for each value: the value itself when a scalar, else its JSON text."""
    if all(value is None or isinstance(value, bool | int | float | str) for value in choice.values):
        return choice.values
    return tuple(json.dumps(_plain(value)) for value in choice.values)


def _chosen(choice: Choice, stored: Any) -> Any:
    return dict(zip(_stored_choices(choice), choice.values, strict=True))[stored]


def _decoded(space: Mapping[str, Parameter], params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's stored parameters as hyperparameter values (a hidden layout as its tuple)."""
    decoded = {}
    for name, value in params.items():
        parameter = space.get(name)
        decoded[name] = _chosen(parameter, value) if isinstance(parameter, Choice) else value
    return decoded


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: what JSON holds."""
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value
