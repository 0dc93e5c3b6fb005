"""One job per model: rebuild its training set, search, train, evaluate; weekly by default."""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from resources.lakehouse_io import asset_key
from training.models import Model
from training.sets import TrainingSet


def train_model(
    model: Model, spec: TrainingSet
) -> tuple[UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    tables = (spec.table, model.study_table, model.model_table, model.evaluation_table)
    job = dg.define_asset_job(
        f"train_{model.name}",
        selection=dg.AssetSelection.assets(*(asset_key(t) for t in tables)),
        description=f"Rebuild {spec.table} as of now, tune {model.name} with Optuna, train the "
        "best parameters out of process, register the version and evaluate it against the "
        "gates and the champion.",
    )
    schedule = dg.ScheduleDefinition(
        job=job,
        cron_schedule="0 4 * * 0",
        execution_timezone="UTC",
        description="Every Sunday at 04:00, after the nightly ingest and relabelling.",
    )
    return job, schedule
