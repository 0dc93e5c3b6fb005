"""Run failures and failed blocking checks reach a real webhook server on loopback, from runs
executed in a temporary Dagster instance."""

from collections.abc import Iterator

import dagster as dg
import pytest

from resources.alerts import Alerts
from sensors.alerts import check_failure_alerts, run_failure_alerts
from tests.webhook import Webhook


@dg.op
def load_batch() -> None:
    raise ValueError("landing file 2024-03-02.parquet has no column amount\nsecond line")


@dg.job
def nightly() -> None:
    load_batch()


def _run_failure(instance: dg.DagsterInstance, alerts: Alerts) -> dg.ExecuteInProcessResult:
    """Run the failing job and evaluate the sensor on its failure; the run."""
    result = nightly.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"alerts": alerts},
    )
    run_failure_alerts()(context)
    return result


def test_a_failed_run_is_a_critical_alert_naming_the_run_step_and_error(
    instance: dg.DagsterInstance, webhook: Webhook
) -> None:
    result = _run_failure(instance, Alerts(webhook_url=webhook.url))

    [alert] = webhook.payloads
    assert alert["tier"] == "critical"
    assert alert["source"] == "run_failure"
    assert alert["tags"] == {"run_id": result.run_id, "job": "nightly"}
    assert result.run_id in alert["title"]
    assert alert["body"] == (
        "failed steps: load_batch\n"
        "error: ValueError: landing file 2024-03-02.parquet has no column amount"
    )


def test_without_a_webhook_a_failed_run_is_logged(
    instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _run_failure(instance, Alerts())

    # The sensor logs to its tick's log (Dagster's own logger, writing to stderr here), which
    # does not propagate to Python's root logger, so caplog cannot see it.
    logged = capsys.readouterr().err
    assert f"ERROR - alert [critical] run_failure: run {result.run_id} of nightly failed" in logged


def test_the_run_failure_sensor_watches_every_job_and_runs_by_default() -> None:
    sensor = run_failure_alerts()
    assert sensor.name == "run_failure_alerts"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert isinstance(sensor, dg.RunStatusSensorDefinition)


def test_a_misspelt_webhook_tier_is_a_configuration_error(instance: dg.DagsterInstance) -> None:
    with pytest.raises(dg.DagsterResourceFunctionError):
        _run_failure(instance, Alerts(min_webhook_tier="urgent"))


DAYS = dg.DailyPartitionsDefinition(start_date="2024-03-01")


@dg.asset(
    key=["silver", "transactions"],
    partitions_def=DAYS,
    check_specs=[
        dg.AssetCheckSpec("amount_positive", asset=["silver", "transactions"], blocking=True),
        dg.AssetCheckSpec("few_nulls", asset=["silver", "transactions"]),
    ],
)
def transactions() -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(
        check_name="amount_positive",
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description="3 rows have a negative amount",
        metadata={"failing_rows": 3, "sample": "t-17, t-42, t-99"},
    )
    # Failed but not blocking: the run goes on (it fails because of the blocking one only).
    yield dg.AssetCheckResult(
        check_name="few_nulls", passed=False, severity=dg.AssetCheckSeverity.ERROR
    )


def test_a_failed_blocking_check_is_one_warning_and_only_once(
    instance: dg.DagsterInstance, webhook: Webhook
) -> None:
    sensor = check_failure_alerts()
    alerts = Alerts(webhook_url=webhook.url)

    def tick(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"alerts": alerts}
        ) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        return result

    first = tick(None)  # starts from now: nothing from before it is reported
    assert first.skip_reason is not None
    quiet = tick(first.cursor)
    assert quiet.skip_reason is not None
    assert quiet.skip_reason.skip_message == "no failed blocking check in 0 failed run(s)"

    run = dg.materialize(
        [transactions], instance=instance, partition_key="2024-03-02", raise_on_error=False
    )
    assert not run.success
    second = tick(quiet.cursor)

    [alert] = webhook.payloads
    assert alert["tier"] == "warning"
    assert alert["source"] == "asset_check"
    assert alert["title"] == (
        "blocking check amount_positive of silver/transactions failed for 2024-03-02"
    )
    assert alert["body"] == (
        f"3 rows have a negative amount\nfailing_rows=3, sample=t-17, t-42, t-99\nrun: {run.run_id}"
    )
    assert alert["tags"] == {
        "asset": "silver/transactions",
        "check": "amount_positive",
        "partition": "2024-03-02",
        "run_id": run.run_id,
    }
    assert second.skip_reason is None

    third = tick(second.cursor)
    assert third.skip_reason is not None
    assert len(webhook.payloads) == 1


def test_a_failed_run_without_failed_checks_is_no_check_alert(
    instance: dg.DagsterInstance, webhook: Webhook
) -> None:
    sensor = check_failure_alerts()
    resources = {"alerts": Alerts(webhook_url=webhook.url)}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        start = sensor(context)
    nightly.execute_in_process(instance=instance, raise_on_error=False)

    with dg.build_sensor_context(
        instance=instance, cursor=start.cursor, resources=resources
    ) as context:
        result = sensor(context)

    assert result.skip_reason.skip_message == "no failed blocking check in 1 failed run(s)"
    assert not webhook.payloads
