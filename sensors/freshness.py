"""Freshness: each day the nightly ingest makes is promised by 06:00 UTC, and a broken promise
reaches a person.

Dagster's own time-partition freshness checks (severity WARN) judge the promise, run by its
freshness-check sensor; the day still missing at the deadline is made by declarative automation
(``factories.policies.OVERDUE``). A check's result stays in the UI only, so ``freshness_alerts``
sends each failed evaluation as a warning naming the asset and the day it lacks.

Dagster 1.13 marks these checks superseded by ``FreshnessPolicy`` objects, which the assets carry
too (for the UI's freshness status). Those are judged by a freshness daemon that is off unless the
instance enables it, and by the latest materialization of any day; the checks ask for the day that
is due, run wherever sensors run, and leave an evaluation a sensor and a test can read.
"""

import json
import warnings
from collections.abc import Sequence

import dagster as dg

from factories.policies import DEADLINE_CRON
from monitoring.alerts import Alert, Tier
from resources.alerts import Alerts

FRESHNESS_CHECKS_SENSOR = "freshness_checks"


def freshness_checks(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetChecksDefinition]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return list(
            dg.build_time_partition_freshness_checks(
                assets=assets, deadline_cron=DEADLINE_CRON, timezone="UTC"
            )
        )


def freshness_sensors(checks: Sequence[dg.AssetChecksDefinition]) -> list[dg.SensorDefinition]:
    """The checks' own sensor and the alerting one, both running by default: a deadline nobody
    watches is no deadline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        checking = dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            name=FRESHNESS_CHECKS_SENSOR,
            default_status=dg.DefaultSensorStatus.RUNNING,
        )
    return [checking, freshness_alerts([key for c in checks for key in c.check_keys])]


def freshness_alerts(keys: Sequence[dg.AssetCheckKey]) -> dg.SensorDefinition:
    @dg.sensor(
        name="freshness_alerts",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A warning for each freshness check that fails: an asset without "
        "yesterday's day at the 06:00 deadline.",
    )
    def _freshness_alerts(context: dg.SensorEvaluationContext, alerts: Alerts) -> dg.SensorResult:
        seen: dict[str, int] = json.loads(context.cursor or "{}")
        sent = []
        for key in keys:
            record = context.instance.get_latest_asset_check_evaluation_record(key)
            name = key.to_user_string()
            if record is None or record.id <= seen.get(name, 0):
                continue
            evaluation = record.evaluation
            if not isinstance(evaluation, dg.AssetCheckEvaluation):
                continue  # planned, not run yet: its record is completed in place later
            seen[name] = record.id
            if evaluation.passed:
                continue
            alerts.send(_alert(evaluation, record.run_id), context.log)
            sent.append(evaluation.asset_key.to_user_string())
        cursor = json.dumps(seen, sort_keys=True)
        if not sent:
            return dg.SensorResult(skip_reason="no freshness check failed since", cursor=cursor)
        return dg.SensorResult(cursor=cursor)

    return _freshness_alerts


def _alert(evaluation: dg.AssetCheckEvaluation, run_id: str) -> Alert:
    asset = evaluation.asset_key.to_user_string()
    shown = {name: value.value for name, value in evaluation.metadata.items()}
    lacking = shown.get("dagster/latest_cron_tick_timestamp")
    return Alert(
        tier=Tier.WARNING,
        title=f"{asset} missed its 06:00 UTC deadline",
        body="\n".join(line for line in (evaluation.description or "", f"run: {run_id}") if line),
        source="freshness",
        tags={"asset": asset, "check": evaluation.check_name, "deadline": str(lacking or "")},
    )
