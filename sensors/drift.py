"""Drift closes the loop: a day's drift report that reaches the monitor's ``retrain_on`` severity
requests one retraining of the watched model, at most once per ``cooldown``.

The cooldown is counted in days scored, not wall-clock time: reports backfilled or rerun late are
judged by the days they describe. One tick requests at most one retraining, since the job
trains on everything up to now and a second run in the same tick would train the same model.
"""

import json
from dataclasses import dataclass
from datetime import date

import dagster as dg

from monitoring.alerts import Tier
from monitoring.monitors import Monitor
from resources.lakehouse_io import asset_key

PAGE = 1000
"""Reports read per tick; more wait for the next tick (a report is one scored day)."""

FEATURES_TAG_CHARS = 200
"""Run tags are for filtering and reading in the UI, not for a list of hundreds of columns."""


@dataclass(frozen=True)
class _Report:
    day: date
    severity: Tier
    features: str
    reference_version: str


def drift_sensor(monitor: Monitor, job_name: str) -> dg.SensorDefinition:
    """Requests ``job_name`` when ``monitor``'s drift report reaches ``retrain_on``.

    Running by default: retraining on drift is the loop the platform exists for, and a sensor
    that someone has to remember to switch on in the UI after each deployment silently breaks
    it. The cooldown, the run key per drifting day and the retraining's own evaluation gate are
    what keep it safe to leave on; nothing it starts is promoted without that gate.
    """
    key = asset_key(monitor.drift_table)
    threshold = Tier(monitor.retrain_on)

    @dg.sensor(
        name=f"{monitor.name}_drift",
        job_name=job_name,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Retrain when {monitor.drift_table} reaches {monitor.retrain_on}, at most "
        f"once per {monitor.cooldown.days} scored days.",
    )
    def _drift(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        state = json.loads(context.cursor or "{}")
        last_day = state.get("last_requested_day")
        last = date.fromisoformat(last_day) if last_day else None
        fetched = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=state.get("storage_id")),
            limit=PAGE,
            ascending=True,
        )
        reports: list[_Report] = []
        for record in fetched.records:
            try:
                report = _report(record)
            except ValueError as error:  # one unreadable report must not stop the sensor
                context.log.warning("%s: report skipped: %s", monitor.drift_table, error)
                continue
            if report is not None:
                reports.append(report)
        reports.sort(key=lambda r: r.day)
        requested: list[_Report] = []
        held: list[_Report] = []
        for report in (r for r in reports if r.severity.at_least(threshold)):
            if last is not None and report.day - last < monitor.cooldown:
                held.append(report)
            else:
                requested.append(report)
                last = report.day
        cursor = json.dumps(
            {
                "storage_id": fetched.records[-1].storage_id
                if fetched.records
                else state.get("storage_id"),
                "last_requested_day": last.isoformat() if last else None,
            }
        )
        if not requested:
            why = _why_not(reports, held, last, monitor)
            return dg.SensorResult(skip_reason=why, cursor=cursor)
        # The job retrains on everything up to now: one run covers every day that asked for one.
        if len(requested) > 1:
            context.log.info(
                "drift on %s: one retraining requested, for the latest",
                ", ".join(r.day.isoformat() for r in requested),
            )
        return dg.SensorResult(run_requests=[_request(monitor, requested[-1])], cursor=cursor)

    return _drift


def _report(record: dg.EventLogRecord) -> _Report | None:
    """The contract's fields of one materialization; None for one without a day. Raises
    ValueError for one that breaks the contract."""
    materialization = record.asset_materialization
    if materialization is None or record.partition_key is None:
        return None

    def text(name: str) -> str:
        value = materialization.metadata.get(name)
        return "" if value is None else str(value.value)

    severity = text("worst_severity")
    if severity not in set(Tier):
        raise ValueError(f"day {record.partition_key}: worst_severity {severity!r} is not a tier")
    return _Report(
        day=date.fromisoformat(record.partition_key),
        severity=Tier(severity),
        features=text("drifted_features"),
        reference_version=text("reference_version"),
    )


def _request(monitor: Monitor, report: _Report) -> dg.RunRequest:
    day = report.day.isoformat()
    return dg.RunRequest(
        run_key=f"{monitor.name}:{day}",
        tags={
            "monitor": monitor.name,
            "drift_day": day,
            "drift_severity": str(report.severity),
            "drift_features": _shorten(report.features, FEATURES_TAG_CHARS),
            "reference_version": report.reference_version,
        },
    )


def _shorten(features: str, limit: int) -> str:
    """``features`` cut at a column boundary, with a count of the columns left out."""
    if len(features) <= limit:
        return features
    names = features.split(",")
    for kept in range(len(names) - 1, 0, -1):
        shortened = f"{','.join(names[:kept])} (+{len(names) - kept} more)"
        if len(shortened) <= limit:
            return shortened
    return f"({len(names)} columns)"


def _why_not(
    reports: list[_Report], held: list[_Report], last: date | None, monitor: Monitor
) -> str:
    if held:
        latest = held[-1]
        return (
            f"drift on {latest.day} ({latest.severity}) within the {monitor.cooldown.days}-day "
            f"cooldown of the retraining requested for {last}"
        )
    if not reports:
        return f"no new report of {monitor.drift_table}"
    worst = max(r.severity for r in reports)
    days = f"{reports[0].day}" if len(reports) == 1 else f"{reports[0].day} to {reports[-1].day}"
    return (
        f"{len(reports)} report{'s' * (len(reports) > 1)} ({days}), worst {worst}; "
        f"below {monitor.retrain_on}"
    )
