"""Failures reach a person: a failed run is a critical alert, a failed blocking check a warning
that names the asset, the check and the partition, through the ``alerts`` resource."""

from collections.abc import Mapping

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from monitoring.alerts import Alert, Tier
from resources.alerts import Alerts

PAGE = 100
"""Failed runs read per tick; more wait for the next tick."""

SUMMARY_ENTRIES = 8
SUMMARY_CHARS = 80
"""An alert shows a check's metadata as a glance, not in full: the UI has the rest."""


def run_failure_alerts() -> dg.SensorDefinition:
    """Running by default, like Dagster's own run-status sensors it is built on: an alerting
    sensor that has to be switched on is off exactly when it was needed."""

    @dg.run_failure_sensor(
        name="run_failure_alerts",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A critical alert for every failed run of a job in this code location.",
    )
    def _run_failure(context: dg.RunFailureSensorContext, alerts: Alerts) -> None:
        run = context.dagster_run
        failures = context.get_step_failure_events()
        steps = ", ".join(e.step_key for e in failures if e.step_key) or "none (the run itself)"
        if failures:
            error = failures[0].step_failure_data.error
            # A user code error is wrapped in Dagster's "error while executing op"; the cause is
            # what says what went wrong.
            if error is not None and error.cause is not None:
                error = error.cause
        else:
            error = context.failure_event.job_failure_data.error
        message = error.message if error is not None else context.failure_event.message or ""
        first_line = next(iter(message.strip().splitlines()), "no error message")
        alerts.send(
            Alert(
                tier=Tier.CRITICAL,
                title=f"run {run.run_id} of {run.job_name} failed",
                body=f"failed steps: {steps}\nerror: {first_line}",
                source="run_failure",
                tags={"run_id": run.run_id, "job": run.job_name},
            ),
            context.log,
        )

    return _run_failure


def check_failure_alerts() -> dg.SensorDefinition:
    """Warns of each failed blocking check since the last tick.

    A blocking check that fails with severity ERROR fails its run, so the failed runs are where
    to look: Dagster 1.13 has a paged, cursored query for run status changes
    (``fetch_run_status_changes``) and deprecates the general event-record query for everything
    else. The first tick starts from now, as run-status sensors do, rather than alerting on the
    instance's whole history.
    """

    @dg.sensor(
        name="check_failure_alerts",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A warning for every failed blocking asset check (severity ERROR).",
    )
    def _check_failure(context: dg.SensorEvaluationContext, alerts: Alerts) -> dg.SensorResult:
        instance = context.instance
        if context.cursor is None:
            latest = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=1)
            after = latest.records[0].storage_id if latest.records else 0
            return dg.SensorResult(
                skip_reason="first tick: alerting on checks that fail from now on",
                cursor=str(after),
            )
        fetched = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(
                dg.DagsterEventType.RUN_FAILURE, after_storage_id=int(context.cursor)
            ),
            limit=PAGE,
            ascending=True,
        )
        sent = 0
        for failed in fetched.records:
            evaluations = _failed_blocking_checks(instance, failed.run_id)
            if not evaluations:
                continue
            # A check of a partitioned asset reports no partition unless the check itself is
            # partitioned; the run's partition is the one it checked.
            run = instance.get_run_by_id(failed.run_id)
            run_partition = _partition_of(run) if run else None
            for evaluation in evaluations:
                partition = evaluation.partition or run_partition
                alerts.send(_check_alert(evaluation, failed.run_id, partition), context.log)
                sent += 1
        cursor = str(fetched.records[-1].storage_id) if fetched.records else context.cursor
        if sent:
            return dg.SensorResult(cursor=cursor)
        return dg.SensorResult(
            skip_reason=f"no failed blocking check in {len(fetched.records)} failed run(s)",
            cursor=cursor,
        )

    return _check_failure


def _failed_blocking_checks(
    instance: dg.DagsterInstance, run_id: str
) -> list[dg.AssetCheckEvaluation]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = (
        r.event_log_entry.dagster_event.asset_check_evaluation_data
        for r in records
        if r.event_log_entry.dagster_event is not None
    )
    return [
        e
        for e in evaluations
        if not e.passed and e.blocking and e.severity == dg.AssetCheckSeverity.ERROR
    ]


def _partition_of(run: dg.DagsterRun) -> str | None:
    """The partition a run materialized, or its range (``first...last``) for a backfill run."""
    first = run.tags.get(ASSET_PARTITION_RANGE_START_TAG)
    if first is not None:
        return f"{first}...{run.tags.get(ASSET_PARTITION_RANGE_END_TAG)}"
    return run.tags.get(PARTITION_NAME_TAG)


def _check_alert(evaluation: dg.AssetCheckEvaluation, run_id: str, partition: str | None) -> Alert:
    asset = evaluation.asset_key.to_user_string()
    where = f" for {partition}" if partition else ""
    lines = [evaluation.description or "", _summary(evaluation.metadata), f"run: {run_id}"]
    return Alert(
        tier=Tier.WARNING,
        title=f"blocking check {evaluation.check_name} of {asset} failed{where}",
        body="\n".join(line for line in lines if line),
        source="asset_check",
        tags={
            "asset": asset,
            "check": evaluation.check_name,
            "partition": partition or "",
            "run_id": run_id,
        },
    )


def _summary(metadata: Mapping[str, dg.MetadataValue]) -> str:
    """``key=value`` for the first few entries, each value cut short."""
    shown = []
    for name, value in list(metadata.items())[:SUMMARY_ENTRIES]:
        text = str(value.value)
        shown.append(
            f"{name}={text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + '…'}"
        )
    more = len(metadata) - SUMMARY_ENTRIES
    return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")
