"""Turns each monitor declaration into the assets that watch its deployment.

- ``monitoring/<name>_reference``: the champion's reference. whylogs profiles of the last
  ``reference_days`` days of the training set it learned from, each scored by it (over a training
  set of a month or more, the last days are its validation and test splits: scores of data it did
  not fit, as in production, so prediction drift does not fire on its own confidence). Their
  merge is the reference, and the drift thresholds are calibrated on those days (the first half
  merged as a reference, the second half as stationary days judged against it). Recorded with
  the champion's version, and made again, by declarative automation, when a new version is
  deployed.
- ``monitoring/<name>_profiles``: a profile of each scored day of the deployment's batch scores:
  every model input as served, and the probability (prediction drift is drift of that column);
  with the drift report, made by declarative automation as soon as the day is scored.
- ``monitoring/<name>_drift_report``: the day's profile against the reference, one finding per
  column and metric with its severity. Its metadata (worst severity, drifted features) is what
  the drift sensor reads, and its numbers plot over time in the UI.
- ``monitoring/<name>_performance``: realized AUROC, precision and recall per day and model
  version as the chargebacks known so far label the scored days, and the arms of the online
  log compared when it holds a challenger.

Profiles are Delta rows: whylogs' protobuf bytes in a binary column (never a pickle), so they are
versioned with the lake, go to S3 with it, and go through the one IO manager.
"""

import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from factories.deployments import served_champion
from factories.models import training_rows
from factories.policies import FOLLOWS_UPSTREAM
from factories.readiness import require_ready_inputs
from monitoring.drift import Thresholds, calibrate, drift_report, worst
from monitoring.monitors import PREDICTION, Monitor
from monitoring.performance import (
    compare_arms,
    expected_calibration_error,
    labels_as_of,
    realized_performance,
)
from monitoring.profiles import from_bytes, merge, profile, summary, to_bytes
from registry import Registry
from resources.audit import registry_audit
from resources.lakehouse import Lakehouse
from resources.lakehouse_io import asset_key
from resources.table_metadata import frame_value
from resources.tracking import MlflowTracking
from serving.deployments import Deployment
from training.sets import TrainingSet, feature_columns

GROUP = "monitoring"
PREDICTIONS_TABLE = "monitoring/predictions"
PROFILE_SCHEMA = {"day": pl.Date(), "model_version": pl.String(), "rows": pl.Int64()}
REFERENCE_SCHEMA = {
    "model_version": pl.String(),
    "first_day": pl.Date(),
    "last_day": pl.Date(),
    "rows": pl.Int64(),
    "profile": pl.Binary(),
    "thresholds": pl.String(),
}
SHOWN_FINDINGS = 15


def monitor_assets(
    monitor: Monitor, registry: Registry, daily: dg.DailyPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    deployment = registry.deployments[monitor.deployment]
    spec = registry.training_sets[registry.models[deployment.model].training_set]
    columns = profiled_columns(
        monitor, spec, registry.sources[deployment.request_source].primary_key
    )
    return [
        reference_asset(monitor, deployment, registry, columns),
        profiles_asset(monitor, deployment, columns, daily),
        drift_asset(monitor, columns, daily),
        performance_asset(monitor, deployment, registry),
    ]


def profiled_columns(monitor: Monitor, spec: TrainingSet, primary_key: str) -> list[str]:
    """The declared columns, or every model input but the event's id and time (an id is new
    every day and time always moves: neither says anything about drift) and the prediction."""
    if monitor.features:
        return list(monitor.features)
    inputs = [c for c in feature_columns(spec) if c not in (primary_key, spec.event_time)]
    return [*inputs, PREDICTION]


def reference_asset(
    monitor: Monitor, deployment: Deployment, registry: Registry, columns: list[str]
) -> dg.AssetsDefinition:
    model = registry.models[deployment.model]
    spec = registry.training_sets[model.training_set]

    @dg.asset(
        key=asset_key(monitor.reference_table),
        deps=[asset_key(deployment.table)],
        automation_condition=FOLLOWS_UPSTREAM,
        group_name=GROUP,
        owners=[monitor.owner],
        kinds={"whylogs", "delta"},
        description=f"What {deployment.name}'s champion learned from, profiled: the reference "
        "its daily drift is measured against, and thresholds calibrated on its own days.",
    )
    def reference(
        context: dg.AssetExecutionContext, mlflow: MlflowTracking, lakehouse: Lakehouse
    ) -> pl.DataFrame:
        models = mlflow.registry(registry_audit(lakehouse))
        with tempfile.TemporaryDirectory() as scratch:
            champion = served_champion(models, model.name, Path(scratch))
            rows = training_rows(mlflow, lakehouse, model, spec, champion.version)
            days = last_days(rows.collect(), spec.event_time, monitor.reference_days)
            profiles = [
                profile(
                    frame.with_columns(pl.Series(PREDICTION, champion.scorer.score(frame))),
                    columns,
                    dataset_timestamp=_midnight(day),
                )
                for day, frame in days
            ]
        if len(profiles) < 2:
            raise dg.Failure(
                f"{spec.table} as version {champion.version} learned from it has "
                f"{len(profiles)} day(s): a reference needs two to calibrate on"
            )
        half = len(profiles) // 2
        thresholds = calibrate(
            merge(profiles[:half]), profiles[half:], margin=monitor.margin, columns=columns
        )
        merged = merge(profiles)
        context.add_output_metadata(
            {
                "model_version": champion.version,
                "days": f"{days[0][0]} .. {days[-1][0]}",
                "profile": frame_value(summary(merged)),
                "thresholds": dg.MetadataValue.json(_levels(thresholds, columns)),
            }
        )
        return pl.DataFrame(
            {
                "model_version": [champion.version],
                "first_day": [days[0][0]],
                "last_day": [days[-1][0]],
                "rows": [sum(frame.height for _, frame in days)],
                "profile": [to_bytes(merged)],
                "thresholds": [thresholds.to_json()],
            },
            schema=REFERENCE_SCHEMA,
        )

    return reference


def profiles_asset(
    monitor: Monitor,
    deployment: Deployment,
    columns: list[str],
    daily: dg.DailyPartitionsDefinition,
) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(monitor.profiles_table),
        partitions_def=daily,
        automation_condition=FOLLOWS_UPSTREAM,
        ins={"scores": dg.AssetIn(asset_key(deployment.scores_table))},
        group_name=GROUP,
        owners=[monitor.owner],
        kinds={"whylogs", "delta"},
        description=f"A whylogs profile of each day {deployment.name} scored: the model's "
        "inputs as served and its probability.",
    )
    def profiles(context: dg.AssetExecutionContext, scores: pl.LazyFrame) -> pl.DataFrame:
        require_ready_inputs(context)
        day = date.fromisoformat(context.partition_key)
        frame = scores.collect()
        view = profile(frame, columns, dataset_timestamp=_midnight(day))
        versions = sorted(set(frame["model_version"])) if frame.height else []
        context.add_output_metadata(
            {
                "rows": frame.height,
                "model_version": ", ".join(versions),
                "profile": frame_value(summary(view)),
            }
        )
        return pl.DataFrame(
            {
                "day": [day],
                "model_version": [", ".join(versions)],
                "rows": [frame.height],
                "profile": [to_bytes(view)],
            },
            schema={**PROFILE_SCHEMA, "profile": pl.Binary()},
        )

    return profiles


def drift_asset(
    monitor: Monitor, columns: list[str], daily: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(monitor.drift_table),
        partitions_def=daily,
        automation_condition=FOLLOWS_UPSTREAM,
        ins={
            "profiles": dg.AssetIn(asset_key(monitor.profiles_table)),
            # Each day is judged against the reference as it is now (the serving champion's).
            "reference": dg.AssetIn(asset_key(monitor.reference_table)),
        },
        group_name=GROUP,
        owners=[monitor.owner],
        kinds={"whylogs", "delta"},
        description="Each day's drift from the champion's reference, per column and metric: "
        "effect sizes (PSI, KS, Hellinger, null and unseen shares) graded against thresholds "
        "calibrated on stationary days, schema changes, and whylogs' own test for reference.",
    )
    def drift(
        context: dg.AssetExecutionContext, profiles: pl.LazyFrame, reference: pl.LazyFrame
    ) -> pl.DataFrame:
        require_ready_inputs(context)
        ref = reference.collect().row(0, named=True)
        day = profiles.collect().row(0, named=True)
        report = drift_report(
            from_bytes(ref["profile"]),
            from_bytes(day["profile"]),
            Thresholds.from_json(ref["thresholds"]),
            columns,
        )
        graded = report.filter(pl.col("severity") != "info")
        drifted = list(dict.fromkeys(graded["column"]))
        context.add_output_metadata(
            {
                "worst_severity": worst(report),
                "drifted_features": ", ".join(drifted),
                "reference_version": ref["model_version"],
                "critical_findings": graded.filter(pl.col("severity") == "critical").height,
                "warning_findings": graded.filter(pl.col("severity") == "warning").height,
                "prediction_psi": _value(report, PREDICTION, "psi"),
                "max_psi": report.filter(pl.col("metric") == "psi")["value"].max() or 0.0,
                "findings": frame_value(report.head(SHOWN_FINDINGS)),
            }
        )
        return report.with_columns(
            pl.lit(day["day"]).alias("day"), pl.lit(ref["model_version"]).alias("reference_version")
        )

    return drift


def performance_asset(
    monitor: Monitor, deployment: Deployment, registry: Registry
) -> dg.AssetsDefinition:
    labels = registry.sources[monitor.label_source]
    silver = f"silver/{labels.name}"

    @dg.asset(
        key=asset_key(monitor.performance_table),
        deps=[asset_key(deployment.scores_table), asset_key(silver)],
        group_name=GROUP,
        owners=[monitor.owner],
        kinds={"polars", "delta"},
        description=f"How {deployment.name}'s scores turned out, as chargebacks arrive: realized "
        "AUROC, precision and recall per day and model version, with how final each day's "
        "labels are; the online arms compared when a challenger was served.",
    )
    def performance(context: dg.AssetExecutionContext, lakehouse: Lakehouse) -> pl.DataFrame:
        chargebacks = lakehouse.scan(silver).collect()
        if chargebacks.is_empty() or not lakehouse.exists(deployment.scores_table):
            raise dg.Failure(f"no {deployment.scores_table} or {silver} to judge with yet")
        as_of = chargebacks[labels.event_time].max()
        scored = labels_as_of(
            lakehouse.scan(deployment.scores_table).collect(),
            chargebacks,
            as_of,
            monitor.label_window,
        )
        realized = realized_performance(scored, by=("day", "model_version"))
        metadata: dict[str, object] = {
            "labels_as_of": str(as_of),
            "by_version": frame_value(realized_performance(scored, by=("model_version",))),
            "last_days": frame_value(realized.tail(SHOWN_FINDINGS)),
            "expected_calibration_error": expected_calibration_error(scored),
        }
        if lakehouse.exists(PREDICTIONS_TABLE):
            served = lakehouse.scan(PREDICTIONS_TABLE).collect()
            arms = compare_arms(labels_as_of(served, chargebacks, as_of, monitor.label_window))
            if arms.n_b:
                metadata["arms"] = dg.MetadataValue.json(vars(arms))
        context.add_output_metadata(metadata)
        return realized

    return performance


def last_days(frame: pl.DataFrame, event_time: str, count: int) -> list[tuple[date, pl.DataFrame]]:
    """The last ``count`` days of ``frame`` that have rows, oldest first."""
    by_day = frame.with_columns(pl.col(event_time).dt.date().alias("__day"))
    days = by_day["__day"].unique().sort().tail(count).to_list()
    return [(d, by_day.filter(pl.col("__day") == d).drop("__day")) for d in days]


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _value(report: pl.DataFrame, column: str, metric: str) -> float:
    found = report.filter((pl.col("column") == column) & (pl.col("metric") == metric))
    return float(found["value"][0]) if found.height else 0.0


def _levels(thresholds: Thresholds, columns: list[str]) -> dict[str, dict[str, list[float]]]:
    return {
        column: {
            metric: [level.warning, level.critical]
            for metric in ("psi", "ks", "hellinger")
            for level in [thresholds.level(column, metric)]
        }
        for column in columns
    }
