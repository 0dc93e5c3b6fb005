"""Tune out of the Dagster process: ``python -m training.tune`` under Dagster Pipes.

The study's trials train with Lightning like the final training does, so they run out of the
Dagster process too, launched by any Pipes client. The request travels as Pipes extras
(``StudyRequest.to_extras``); the study itself lives in its RDB storage, so a relaunch after a
crash resumes it. Trials run on one device, so there is only ever one process to report.
"""

from __future__ import annotations

import tempfile
from base64 import b64encode
from pathlib import Path
from typing import Any

from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

from training.data import split_by
from training.entry import read_rows
from training.study import StudyRequest, StudyResult, history_plot, run_study

PLOT = "history.png"
ARTIFACTS = "study"
"""The parent MLflow run's artifact folder for the study's plot and result."""


def history_markdown(result: StudyResult) -> str:
    """Every trial as a row: number, state, value, epochs trained, parameters."""
    lines = ["| trial | state | value | epochs | params |", "|---|---|---|---|---|"]
    for trial in result.history:
        value = "" if trial["value"] is None else f"{trial['value']:.4f}"
        params = ", ".join(f"{name}={_short(v)}" for name, v in trial["params"].items())
        lines.append(
            f"| {trial['number']} | {trial['state'].lower()} | {value} | {trial['epochs']} "
            f"| {params} |"
        )
    return "\n".join(lines)


def materialization_metadata(
    request: StudyRequest, result: StudyResult, plot: Path
) -> dict[str, Any]:
    """What the study asset shows: the best trial, the trial counts, the history."""
    data = result.to_json()
    image = b64encode(plot.read_bytes()).decode()
    return {
        "metric": request.metric,
        "best_value": result.best_value,
        "best_trial_number": result.best_trial_number,
        "best_params": {"raw_value": data["best_params"], "type": "json"},
        "best_hyperparameters": {"raw_value": data["best_hyperparameters"], "type": "json"},
        "trials": result.trials,
        "run_now": result.run_now,
        "complete": result.complete,
        "pruned": result.pruned,
        "history": {"raw_value": history_markdown(result), "type": "md"},
        # Inline, as the Dagster UI renders a markdown image: the file itself is MLflow's.
        "history_plot": {
            "raw_value": f"![history](data:image/png;base64,{image})",
            "type": "md",
        },
    }


def log_to_parent(request: StudyRequest, result: StudyResult, plot: Path) -> None:
    """The plot and the result as artifacts of the study's parent MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=request.mlflow_tracking_uri)
    run_id = request.mlflow_parent_run_id
    client.log_artifact(run_id, str(plot), artifact_path=ARTIFACTS)
    client.log_dict(run_id, result.to_json(), f"{ARTIFACTS}/result.json")


def main() -> None:
    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        raise SystemExit("python -m training.tune runs under Dagster Pipes: no Pipes context")
    with open_dagster_pipes() as pipes:
        request = StudyRequest.from_extras(dict(pipes.extras))
        pipes.log.info(f"study {request.study_name!r} on {request.source} in {request.storage}")
        result = run_study(request, split_by(read_rows(request), request.split_column))
        with tempfile.TemporaryDirectory(prefix="optuna-study-") as folder:
            plot = history_plot(result, Path(folder) / PLOT)
            if request.mlflow_parent_run_id is not None:
                log_to_parent(request, result, plot)
            metadata = materialization_metadata(request, result, plot)
        pipes.report_asset_materialization(metadata=metadata)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


if __name__ == "__main__":
    main()
