"""The drift sensor on a real (temporary) Dagster instance: reports are materialized day by day,
the sensor ticks with its cursor carried forward, as the daemon would run it."""

from datetime import date, timedelta

import dagster as dg
import pytest

from monitoring.monitors import Monitor
from resources.lakehouse_io import asset_key
from sensors.drift import FEATURES_TAG_CHARS, drift_sensor

MONITOR = Monitor(
    name="fraud_watch", deployment="fraud_api", owner="ml-team", cooldown=timedelta(days=7)
)
JOB = "train_fraud_scorer"
START = date(2024, 3, 1)


def day(n: int) -> str:
    """Day ``n`` of the scored calendar (day 1 is the first partition)."""
    return (START + timedelta(days=n - 1)).isoformat()


class Loop:
    """A stand-in drift report (the severity of each day chosen by the test), the retraining
    job, and the sensor ticking over them with its cursor."""

    def __init__(self, instance: dg.DagsterInstance, monitor: Monitor = MONITOR) -> None:
        self.instance = instance
        self.severity: dict[str, str] = {}
        self.features: dict[str, str] = {}
        self.cursor: str | None = None

        @dg.asset(
            key=asset_key(monitor.drift_table),
            partitions_def=dg.DailyPartitionsDefinition(start_date=START.isoformat()),
        )
        def drift_report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
            severity = self.severity.get(context.partition_key, "info")
            drifted = "" if severity == "info" else "amount,merchant_risk_30d"
            return dg.MaterializeResult(
                metadata={
                    "worst_severity": severity,
                    "drifted_features": self.features.get(context.partition_key, drifted),
                    "reference_version": "3",
                }
            )

        @dg.asset(key=["models", "fraud_scorer"])
        def model() -> None: ...

        self.report = drift_report
        self.sensor = drift_sensor(monitor, JOB)
        self.defs = dg.Definitions(
            assets=[drift_report, model],
            jobs=[dg.define_asset_job(JOB, selection=[model.key])],
            sensors=[self.sensor],
        )

    def materialize(self, n: int, severity: str = "info") -> None:
        self.severity[day(n)] = severity
        dg.materialize([self.report], instance=self.instance, partition_key=day(n))

    def tick(self) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=self.defs
        ) as context:
            result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result


@pytest.fixture
def loop(instance: dg.DagsterInstance) -> Loop:
    return Loop(instance)


def test_the_sensor_targets_the_retraining_job_and_runs_by_default(loop: Loop) -> None:
    dg.Definitions.validate_loadable(loop.defs)
    assert loop.sensor.name == "fraud_watch_drift"
    assert loop.sensor.job_name == JOB
    assert loop.sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert loop.sensor.minimum_interval_seconds == 60


def test_stationary_days_request_nothing_and_say_what_was_seen(loop: Loop) -> None:
    loop.materialize(1, "info")
    loop.materialize(2, "warning")
    loop.materialize(3, "info")

    result = loop.tick()

    assert not result.run_requests
    assert result.skip_reason is not None
    assert result.skip_reason.skip_message == (
        f"3 reports ({day(1)} to {day(3)}), worst warning; below critical"
    )
    assert "no new report" in (loop.tick().skip_reason.skip_message or "")


def test_a_critical_day_requests_one_retraining_that_says_why(loop: Loop) -> None:
    loop.materialize(29, "warning")
    loop.materialize(30, "critical")

    result = loop.tick()

    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_key == f"fraud_watch:{day(30)}"
    assert request.tags == {
        "monitor": "fraud_watch",
        "drift_day": day(30),
        "drift_severity": "critical",
        "drift_features": "amount,merchant_risk_30d",
        "reference_version": "3",
    }


def test_the_cooldown_counts_scored_days_and_allows_one_retraining(loop: Loop) -> None:
    requests: list[dg.RunRequest] = []
    skips: list[str] = []
    for n in range(30, 37):  # critical every day of the cooldown
        loop.materialize(n, "critical")
        result = loop.tick()
        requests += result.run_requests
        if result.skip_reason:
            skips.append(result.skip_reason.skip_message or "")

    assert [r.tags["drift_day"] for r in requests] == [day(30)]
    assert skips[-1] == (
        f"drift on {day(36)} (critical) within the 7-day cooldown of the retraining "
        f"requested for {day(30)}"
    )

    loop.materialize(37, "info")
    loop.materialize(38, "critical")
    again = loop.tick().run_requests
    assert [r.run_key for r in again] == [f"fraud_watch:{day(38)}"]


def test_a_day_materialized_twice_requests_once(loop: Loop) -> None:
    loop.materialize(30, "critical")
    loop.materialize(30, "critical")
    assert len(loop.tick().run_requests) == 1

    loop.materialize(30, "critical")
    assert not loop.tick().run_requests


def test_a_backfill_seen_in_one_tick_requests_one_retraining(loop: Loop) -> None:
    for n in (40, 30, 50):  # out of order, as a backfill may write them
        loop.materialize(n, "critical")

    requests = loop.tick().run_requests

    assert [r.tags["drift_day"] for r in requests] == [day(50)]
    loop.materialize(55, "critical")
    assert not loop.tick().run_requests  # the cooldown runs from day 50


def test_retrain_on_warning_retrains_on_warnings(instance: dg.DagsterInstance) -> None:
    loop = Loop(
        instance, Monitor(name="fraud_watch", deployment="d", owner="o", retrain_on="warning")
    )
    loop.materialize(5, "warning")
    assert [r.tags["drift_severity"] for r in loop.tick().run_requests] == ["warning"]


def test_a_long_feature_list_is_cut_to_a_tag_at_a_column_boundary(loop: Loop) -> None:
    names = [f"feature_with_a_long_name_{i:02d}" for i in range(40)]
    loop.features[day(30)] = ",".join(names)
    loop.materialize(30, "critical")

    tag = loop.tick().run_requests[0].tags["drift_features"]

    assert len(tag) <= FEATURES_TAG_CHARS
    kept, more = tag.split(" (+")
    assert kept.split(",") == names[: len(kept.split(","))]
    assert more == f"{40 - len(kept.split(','))} more)"


def test_a_report_that_breaks_the_contract_is_passed_over(loop: Loop) -> None:
    loop.materialize(3, "severe")
    loop.materialize(4, "critical")

    assert [r.tags["drift_day"] for r in loop.tick().run_requests] == [day(4)]
