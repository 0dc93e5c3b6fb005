"""What every asset shares: the daily calendar, the owning team, freshness, day mappings and
automation."""

from datetime import timedelta

import dagster as dg

from medallion.derived import Days

OWNERS = ["team:data-platform"]

DAILY_BY_6AM = dg.FreshnessPolicy.cron(
    deadline_cron="0 6 * * *", lower_bound_delta=timedelta(days=1)
)
"""Yesterday's landing day is expected in the lake by 06:00 UTC."""

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
