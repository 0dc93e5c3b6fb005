"""The monitor's assets on the seeded reference run, extended by three days of drift: quiet on the
stationary days it scores, critical from the first drifted day, its profiles and reference kept
in the lake, its realized performance adding up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from assets.monitors.fraud_api import FRAUD_API as FRAUD_API_MONITOR
from factories.monitors import monitor_assets
from monitoring.profiles import from_bytes, summary
from registry import discover
from resources import build_resources
from resources.lakehouse_io import asset_key
from sensors.drift import drift_sensor
from tests.factories.reference_run import CUTOFF, DATA, Trained, trained_platform

DRIFTED = replace(DATA, days=17, drift_start_day=14)
"""Days 2024-05-15..17 drift: larger amounts, new merchants taking a third of the payments."""
SCORED = [CUTOFF.date() - timedelta(days=7) + timedelta(days=i) for i in range(10)]
"""2024-05-08..17: every day after the champion's training rows end."""
STATIONARY = [d for d in SCORED if d < date(2024, 5, 15)]
SETTLED = (
    "amount",
    "channel",
    "device",
    "customer_country",
    "customer_segment",
    "customer_age_band",
    "merchant_category",
    "merchant_country",
    "txn_count_1h",
    "amount_sum_1h",
    "txn_count_24h",
    "amount_sum_24h",
    "distinct_merchants_24h",
    "is_foreign",
)
"""Inputs whose windows fill within a day. The run is 17 days long: 7- and 30-day windows (and
the scores that read them) still grow through it, which a real lake's history has long passed."""
MONITOR = replace(FRAUD_API_MONITOR, features=SETTLED)


@dataclass
class Watched:
    trained: Trained
    drift: dict[date, dict[str, object]]
    """Each scored day's drift report metadata."""


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    with trained_platform(tmp_path_factory.mktemp("platform"), trials=1, data=DRIFTED) as trained:
        trained.registry().promote("fraud_scorer", "1", "alice", ("alice",), "reviewed")
        scores = trained.defs.get_assets_def(asset_key("predictions/fraud_api_daily_scores"))
        ours = monitor_assets(MONITOR, discover(), scores.partitions_def)
        keys = {key for a in ours for key in a.keys}
        everything = [*(a for a in trained.defs.assets if not set(a.keys) & keys), *ours]
        resources = build_resources(trained.settings)

        def materialize(tables: list[str], day: date | None = None) -> dg.ExecuteInProcessResult:
            result = dg.materialize(
                everything,
                selection=[asset_key(t) for t in tables],
                partition_key=day.isoformat() if day else None,
                resources=resources,
                instance=trained.instance,
            )
            assert result.success
            return result

        materialize([MONITOR.reference_table])
        drift = {}
        for day in SCORED:
            result = materialize(
                ["predictions/fraud_api_daily_scores", MONITOR.profiles_table, MONITOR.drift_table],
                day,
            )
            [report] = result.asset_materializations_for_node("monitoring__fraud_api_drift_report")
            drift[day] = {k: v.value for k, v in report.metadata.items()}
        materialize([MONITOR.performance_table])
        yield Watched(trained, drift)


def test_no_drift_alarm_on_stationary_days(watched: Watched) -> None:
    worst = {day: watched.drift[day]["worst_severity"] for day in STATIONARY}
    assert "critical" not in worst.values(), worst


def test_drift_is_critical_from_the_first_drifted_day(watched: Watched) -> None:
    for day in (d for d in SCORED if d not in STATIONARY):
        metadata = watched.drift[day]
        assert metadata["worst_severity"] == "critical", (day, metadata["drifted_features"])
        assert "amount" in str(metadata["drifted_features"]).split(", ")
        assert metadata["reference_version"] == "1"


def test_the_reference_is_the_champions_training_window_with_its_thresholds(
    watched: Watched,
) -> None:
    lake = watched.trained.lakehouse()
    [reference] = lake.scan(MONITOR.reference_table).collect().to_dicts()
    training = lake.scan("training/fraud").collect()
    assert reference["model_version"] == "1"
    assert reference["last_day"] < CUTOFF.date() - timedelta(days=6)  # the label delay's end
    assert reference["rows"] == training.height
    profiled = summary(from_bytes(reference["profile"]))
    assert set(profiled["column"]) == set(SETTLED)
    assert profiled["count"].max() == training.height
    assert set(json.loads(reference["thresholds"])["columns"]) <= set(SETTLED)


def test_each_days_profile_counts_its_scored_rows(watched: Watched) -> None:
    lake = watched.trained.lakehouse()
    profiles = lake.scan(MONITOR.profiles_table).collect().sort("day")
    scored = (
        lake.scan("predictions/fraud_api_daily_scores")
        .group_by(pl.col("event_time").dt.date().alias("day"))
        .len()
        .sort("day")
        .collect()
    )
    assert profiles["day"].to_list() == SCORED
    assert profiles["rows"].to_list() == scored["len"].to_list()
    for row in profiles.iter_rows(named=True):
        assert summary(from_bytes(row["profile"]))["count"].max() == row["rows"]


def test_realized_performance_adds_up_to_the_scored_rows(watched: Watched) -> None:
    lake = watched.trained.lakehouse()
    realized = lake.scan(MONITOR.performance_table).collect()
    assert realized["n"].sum() == lake.scan("predictions/fraud_api_daily_scores").collect().height
    assert set(realized["model_version"]) == {"1"}
    # The oldest scored days have most of their chargebacks: their AUROC is known and useful.
    oldest = realized.filter(pl.col("day") == SCORED[0]).row(0, named=True)
    assert oldest["positives"] > 0 and oldest["auroc"] > 0.7


def test_the_drift_sensor_requests_one_retraining_for_the_drifting_days(
    watched: Watched,
) -> None:
    """Against the run's own reports: three critical days within the cooldown, one retraining."""
    sensor = drift_sensor(MONITOR, "train_fraud_scorer")
    with dg.build_sensor_context(
        instance=watched.trained.instance, definitions=watched.trained.defs
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests or []
    assert sensor.job_name == "train_fraud_scorer"
    assert request.run_key == "fraud_api:2024-05-15"
    assert request.tags["drift_day"] == "2024-05-15"
    assert request.tags["drift_severity"] == "critical"
    assert "amount" in request.tags["drift_features"]
    with dg.build_sensor_context(
        instance=watched.trained.instance, definitions=watched.trained.defs, cursor=result.cursor
    ) as context:
        again = sensor(context)
    assert isinstance(again, dg.SensorResult) and not again.run_requests


def test_a_newly_scored_day_sets_off_its_profile_and_drift_report(watched: Watched) -> None:
    """Declarative automation, as the monitoring sensor evaluates it the morning after."""
    last = SCORED[-1]
    morning = datetime(last.year, last.month, last.day) + timedelta(days=1, hours=7)
    defs, instance = watched.trained.defs, watched.trained.instance
    settled = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=morning
    )
    assert settled.total_requested == 0, "everything was already made from the scores"
    dg.materialize(
        defs.assets,
        selection=[asset_key("predictions/fraud_api_daily_scores")],
        partition_key=last.isoformat(),
        resources=build_resources(watched.trained.settings),
        instance=instance,
    )
    rescored = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=morning, cursor=settled.cursor
    )
    for table in (MONITOR.profiles_table, MONITOR.drift_table):
        assert rescored.get_requested_partitions(asset_key(table)) == {last.isoformat()}
    assert rescored.get_num_requested(asset_key(MONITOR.reference_table)) == 0
