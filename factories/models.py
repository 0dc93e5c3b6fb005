"""Turns each model declaration into ``training/<model>_study``, ``models/<model>`` and
``evaluation/<model>``.

The study and the training run out of process, through Dagster Pipes (``training.tune`` and
``training.entry``): Lightning's DDP re-launches the command it runs, which must not be Dagster.
The Dagster side opens the MLflow run, hands its id over, and afterwards registers the version;
models live in MLflow and assets pass versions, never pickled models. The evaluation scores the
new version, the LightGBM baseline and the current champion on the same test rows, and records
the gates' verdict on the version (``challenger`` when every gate passes) and as a blocking check.
"""

import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import dagster as dg
import lightning
import numpy as np
import polars as pl
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

from resources.audit import registry_audit
from resources.k8s import TrainingPod
from resources.lakehouse import Lakehouse
from resources.lakehouse_io import asset_key
from resources.tracking import MlflowTracking
from resources.trainer import StudyStorage, Trainer
from training.baseline import train_baseline
from training.data import Splits, split_by
from training.entry import MODEL_ARTIFACTS, DeltaSource, MlflowRun, TrainingRequest
from training.evaluation import Evaluation, evaluate, footprint, gate_reasons, write_plots
from training.models import Model
from training.registry import CHAMPION, ModelRegistry
from training.sets import SPLIT, TrainingSet
from training.study import StudyRequest, best_hyperparameters, space_to_json
from training.trainer import load

ROOT = Path(__file__).resolve().parents[1]
"""The project root: the working directory of the training processes."""
GATES = "gates"
TRAINING_SET_VERSION = "training_set_version"
"""The MLflow run tag naming the Delta version of the training set a version learned from."""


class StudyConfig(dg.Config):
    trials: int | None = None
    """Trials of the study; the declaration's when unset (a quick look uses fewer)."""


def model_assets(
    model: Model, spec: TrainingSet, pod: TrainingPod | None = None
) -> list[dg.AssetsDefinition]:
    """``pod``: the Kubernetes pod the study and the training run go to; None, a subprocess."""
    return [
        study_asset(model, spec, pod),
        model_asset(model, spec, pod),
        evaluation_asset(model, spec),
    ]


def study_asset(
    model: Model, spec: TrainingSet, pod: TrainingPod | None = None
) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(model.study_table),
        deps=[asset_key(spec.table)],
        group_name="training",
        owners=[model.owner],
        kinds={"optuna", "pytorch", "mlflow"},
        description=f"Hyperparameter search for {model.name}: TPE sampling, median pruning, "
        f"{model.study.trials} trials maximizing {model.metric}.",
        metadata={"search_space": {name: repr(p) for name, p in model.search_space.items()}},
        op_tags=pod.step_tags() if pod else None,
    )
    def study(
        context: dg.AssetExecutionContext,
        config: StudyConfig,
        pipes: dg.ResourceParam[dg.PipesClient],
        trainer: Trainer,
        mlflow: MlflowTracking,
        lakehouse: Lakehouse,
        studies: StudyStorage,
    ) -> dg.MaterializeResult:
        version = _training_set_version(lakehouse, spec)
        name = study_name(model, version)
        tags = {**_run_tags(context), TRAINING_SET_VERSION: str(version), "optuna.study": name}
        with _mlflow_run(mlflow, model.name, f"study {name}", tags) as run_id:
            request = StudyRequest(
                source=DeltaSource(lakehouse.root_uri, spec.table, version),
                columns=model.columns,
                base=model.hyperparameters,
                space=model.search_space,
                metric=model.metric,
                study=replace(model.study, trials=config.trials or model.study.trials),
                storage=studies.url,
                study_name=name,
                settings=trainer.settings(),
                mlflow_tracking_uri=mlflow.tracking_uri,
                mlflow_experiment_id=mlflow.experiment_id(model.name),
                mlflow_parent_run_id=run_id,
            )
            reported = _launch(pipes, pod, context, "training.tune", request.to_extras())
        return dg.MaterializeResult(
            metadata={
                **reported.metadata,
                "study_name": name,
                "mlflow_run_id": run_id,
                TRAINING_SET_VERSION: version,
            }
        )

    return study


def model_asset(
    model: Model, spec: TrainingSet, pod: TrainingPod | None = None
) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(model.model_table),
        deps=[asset_key(spec.table), asset_key(model.study_table)],
        group_name="models",
        owners=[model.owner],
        kinds={"pytorch", "mlflow"},
        description=model.description,
        metadata={
            "columns": model.columns.to_json(),
            "declared_hyperparameters": model.hyperparameters.to_json(),
        },
        op_tags=pod.step_tags() if pod else None,
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        pipes: dg.ResourceParam[dg.PipesClient],
        trainer: Trainer,
        mlflow: MlflowTracking,
        lakehouse: Lakehouse,
        studies: StudyStorage,
    ) -> dg.MaterializeResult:
        version = _training_set_version(lakehouse, spec)
        tuned = best_hyperparameters(studies.url, study_name(model, version), model.hyperparameters)
        hyperparameters = tuned or model.hyperparameters
        settings = trainer.settings()
        tags = {
            **_run_tags(context),
            TRAINING_SET_VERSION: str(version),
            "training_set_inputs": json.dumps(_input_versions(context, spec)),
            "hyperparameters_from": "study" if tuned else "declaration",
            **_environment(),
        }
        with (
            _mlflow_run(mlflow, model.name, "train", tags) as run_id,
            tempfile.TemporaryDirectory() as output,
        ):
            params = {**hyperparameters.to_json(), **settings.to_json()}
            mlflow.client().log_batch(
                run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())]
            )
            request = TrainingRequest(
                source=DeltaSource(lakehouse.root_uri, spec.table, version),
                columns=model.columns,
                hyperparameters=hyperparameters,
                settings=settings,
                output_dir=output,
                tracking=MlflowRun(mlflow.tracking_uri, run_id),
            )
            reported = _launch(pipes, pod, context, "training.entry", request.to_extras())
            registered = _registry(mlflow, lakehouse).register(
                model.name,
                run_id,
                MODEL_ARTIFACTS,
                tags={"dagster_run_id": context.run_id, TRAINING_SET_VERSION: str(version)},
            )
        return dg.MaterializeResult(
            metadata={
                **reported.metadata,
                "model_version": registered,
                "model_uri": f"models:/{model.name}/{registered}",
                "hyperparameters": hyperparameters.to_json(),
                "hyperparameters_from": tags["hyperparameters_from"],
                TRAINING_SET_VERSION: version,
            }
        )

    return trained_model


def evaluation_asset(model: Model, spec: TrainingSet) -> dg.AssetsDefinition:
    key = asset_key(model.evaluation_table)
    gates = model.gates

    @dg.asset(
        key=key,
        deps=[asset_key(model.model_table)],
        group_name="evaluation",
        owners=[model.owner],
        kinds={"mlflow"},
        description=f"The latest {model.name} version on its test split beside the LightGBM "
        "baseline and the champion: metrics, calibration, slices, bias, size, latency, gates.",
        metadata={"gates": dict(vars(gates)), "slices": list(model.slices)},
        check_specs=[
            dg.AssetCheckSpec(
                GATES,
                asset=key,
                blocking=True,
                description="Every gate of the declaration passes (the version becomes "
                "challenger); a failure names each gate it missed.",
            )
        ],
    )
    def evaluation(
        context: dg.AssetExecutionContext, mlflow: MlflowTracking, lakehouse: Lakehouse
    ) -> dg.MaterializeResult:
        version = _latest_model_version(context, model)
        registry = _registry(mlflow, lakehouse)
        client = mlflow.client()
        run_id = client.get_model_version(model.name, version).run_id
        splits = learned_from(mlflow, lakehouse, model, spec, version)
        test = splits.test
        labels = test[model.columns.label].cast(pl.Int8).to_numpy()
        slices = test.select(model.slices)

        def scored(scores: np.ndarray, threshold: float | None = None) -> Evaluation:
            return evaluate(
                scores,
                labels,
                slices,
                gates.target_precision,
                gates.min_group_rows,
                threshold=threshold,
                min_group_positives=gates.min_group_positives,
            )

        with tempfile.TemporaryDirectory() as scratch:
            folder = registry.download(model.name, version, Path(scratch) / "candidate")
            candidate = load(folder)
            scores = candidate.score(test).numpy()
            result = scored(scores)
            size = footprint(candidate, folder, test)
            baseline = scored(train_baseline(splits, model.columns).score(test))
            champion_version = registry.version_of(model.name, CHAMPION)
            champion = None
            if champion_version is not None and champion_version != version:
                champion_folder = registry.download(
                    model.name, champion_version, Path(scratch) / "champion"
                )
                champion = scored(load(champion_folder).score(test).numpy())
            reasons = gate_reasons(result, size, gates, champion, champion_version)
            plots = write_plots(scores, labels, result, Path(scratch) / "plots")
            client.log_artifacts(run_id, str(plots[0].parent), artifact_path="evaluation")
        change = registry.record_gates(
            model.name, version, reasons, actor=_actor(context), threshold=result.threshold
        )
        promoted = None
        if not reasons and model.auto_promote:
            promoted = registry.auto_promote(
                model.name, version, reason="passed every gate and beat the champion"
            )
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[
                *(Metric(f"test_{k}", v, now, 0) for k, v in result.summary().items()),
                *(Metric(f"baseline_{k}", v, now, 0) for k, v in baseline.summary().items()),
            ],
        )
        verdict = "passed every gate" if not reasons else "; ".join(reasons)
        metadata = {
            "model_version": version,
            "auroc": result.auroc,
            "average_precision": result.average_precision,
            "threshold": result.threshold,
            "precision_at_threshold": result.precision,
            "recall_at_threshold": result.recall,
            "calibration_error": result.calibration_error,
            "bias_gaps": result.bias_gaps,
            "baseline_auroc": baseline.auroc,
            "baseline_average_precision": baseline.average_precision,
            "champion_version": champion_version or "none",
            "champion_average_precision": champion.average_precision if champion else None,
            "parameters": size.parameters,
            "size_bytes": size.bytes,
            "latency_p99_ms": size.p99_ms,
            "slices": dg.MetadataValue.md(_slice_table(result)),
            "evaluation": dg.MetadataValue.json(result.to_json()),
            "aliases": {c.alias: c.version for c in (change, promoted) if c is not None},
            "plots": f"{client.get_run(run_id).info.artifact_uri}/evaluation",
        }
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                dg.AssetCheckResult(
                    check_name=GATES,
                    passed=not reasons,
                    description=verdict,
                    metadata={"reasons": reasons, "model_version": version},
                )
            ],
        )

    return evaluation


def learned_from(
    mlflow: MlflowTracking, lakehouse: Lakehouse, model: Model, spec: TrainingSet, version: str
) -> Splits:
    """The splits of the training set version that ``version`` learned from, so a version is
    always judged on its own hold-out."""
    frame = training_rows(mlflow, lakehouse, model, spec, version).select(*model.inputs(), SPLIT)
    return split_by(frame.collect())


def training_rows(
    mlflow: MlflowTracking, lakehouse: Lakehouse, model: Model, spec: TrainingSet, version: str
) -> pl.LazyFrame:
    """The training set as ``version`` learned from it: the Delta version its run recorded."""
    client = mlflow.client()
    run_id = client.get_model_version(model.name, version).run_id
    set_version = int(client.get_run(run_id).data.tags[TRAINING_SET_VERSION])
    return lakehouse.scan(spec.table, version=set_version)


def study_name(model: Model, training_set_version: int) -> str:
    """One study per model, search and training set version: a retry resumes it; new data, a
    new search space or another metric starts a new one."""
    search = {"space": space_to_json(model.search_space), "metric": model.metric}
    digest = hashlib.sha256(json.dumps(search, sort_keys=True).encode()).hexdigest()[:8]
    return f"{model.name}-training-set-v{training_set_version}-{digest}"


def _launch(
    pipes: dg.PipesClient,
    pod: TrainingPod | None,
    context: dg.AssetExecutionContext,
    module: str,
    extras: dict[str, object],
) -> dg.MaterializeResult:
    """Run ``python -m <module>`` under Pipes, from the project root or in the training pod
    (``pipes`` is then dagster-k8s' client); what it reported."""
    if pod is None:
        invocation = pipes.run(
            command=[sys.executable, "-m", module], context=context, extras=extras, cwd=str(ROOT)
        )
    else:
        invocation = pipes.run(
            context=context,
            extras=extras,
            image=pod.image,
            command=pod.command(module),
            namespace=pod.namespace,
            base_pod_spec=pod.pod_spec(),
            base_pod_meta=pod.pod_meta(),
        )
    return invocation.get_materialize_result()


def _training_set_version(lakehouse: Lakehouse, spec: TrainingSet) -> int:
    version = lakehouse.version(spec.table)
    if version is None:
        raise dg.Failure(f"{spec.table} has never been materialized: materialize it first.")
    return version


def _latest_model_version(context: dg.AssetExecutionContext, model: Model) -> str:
    event = context.instance.get_latest_materialization_event(asset_key(model.model_table))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{model.model_table} has never been materialized: train it first.")
    return str(event.asset_materialization.metadata["model_version"].value)


def _input_versions(context: dg.AssetExecutionContext, spec: TrainingSet) -> dict[str, int]:
    """The Delta versions the training set was built from, as its materialization recorded."""
    event = context.instance.get_latest_materialization_event(asset_key(spec.table))
    if event is None or event.asset_materialization is None:
        return {}
    recorded = event.asset_materialization.metadata.get("input_versions")
    return dict(recorded.value) if recorded is not None else {}


def _registry(mlflow: MlflowTracking, lakehouse: Lakehouse) -> ModelRegistry:
    return mlflow.registry(registry_audit(lakehouse))


def _actor(context: dg.AssetExecutionContext) -> str:
    return f"dagster:{context.run_id}"


def _run_tags(context: dg.AssetExecutionContext) -> dict[str, str]:
    return {
        "dagster_run_id": context.run_id,
        "dagster_asset": context.asset_key.to_user_string(),
        "mlflow.source.git.commit": _git_commit(),
    }


def _environment() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "platform": platform.platform(),
    }


def _git_commit() -> str:
    """The checked-out commit, with ``-dirty`` when the tree has changes; ``unknown`` outside
    a git checkout (an installed wheel)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


@contextmanager
def _mlflow_run(
    mlflow: MlflowTracking, experiment: str, name: str, tags: dict[str, str]
) -> Iterator[str]:
    """An MLflow run open for the block: FINISHED when it ends, FAILED when it raises."""
    client: MlflowClient = mlflow.client()
    run = client.create_run(mlflow.experiment_id(experiment), run_name=name)
    client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    try:
        yield run.info.run_id
    except BaseException:
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))


def _slice_table(evaluation: Evaluation) -> str:
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "| slice | group | rows | positives | recall | false positive rate | AUROC | gated |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {g.column} | {g.group} | {g.rows} | {g.positives} | {shown(g.recall)} | "
        f"{shown(g.false_positive_rate)} | {shown(g.auroc)} | {'yes' if g.gated else 'no'} |"
        for g in evaluation.groups
    ]
    return "\n".join(lines)
