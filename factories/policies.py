"""What every asset shares: the daily calendar, the owning team, freshness, day mappings and
automation."""

from datetime import timedelta

import dagster as dg

from medallion.derived import Days

OWNERS = ["team:data-platform"]

INGEST_GROUPS = ("bronze", "silver", "gold", "features")
"""The groups the nightly ingest makes, one landing day at a time."""

DEADLINE_CRON = "0 6 * * *"
"""Yesterday's landing day is expected in the lake, and its features online, by 06:00 UTC."""

DAILY_BY_6AM = dg.FreshnessPolicy.cron(
    deadline_cron=DEADLINE_CRON, lower_bound_delta=timedelta(days=1)
)

OVERDUE = (
    dg.AutomationCondition.in_latest_time_window()
    & dg.AutomationCondition.missing()
    & dg.AutomationCondition.cron_tick_passed(DEADLINE_CRON, "UTC")
    & ~dg.AutomationCondition.in_progress()
).with_label("still missing at the 06:00 deadline")
"""The day the nightly ingest did not make (its schedule was off, its run failed and the cause
was fixed) is made at the deadline, while the freshness check warns of it. Once: a day that fails
again waits for a person instead of retrying all day."""

FOLLOWS_UPSTREAM = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, once upstream checks pass")
"""Materialize (the newest day) as soon as the inputs update. ``eager()`` alone ignores a failed
blocking check upstream, and would publish what the gate stopped."""

_ALL_HISTORY = 36_500
"""A hundred years of days: "every earlier day" as a window Dagster can map."""


def daily_partitions(start: str) -> dg.DailyPartitionsDefinition:
    """One partition per landing day, from the deployment's first day (``PIPELINE_START_DATE``)."""
    return dg.DailyPartitionsDefinition(start_date=start)


def day_mapping(days: Days) -> dg.TimeWindowPartitionMapping:
    """Day D reads D-before .. D+after of its input; days before the start simply do not exist."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-(_ALL_HISTORY if days.before is None else days.before),
        end_offset=days.after,
        allow_nonexistent_upstream_partitions=True,
    )
