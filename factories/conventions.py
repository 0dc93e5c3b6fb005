"""What every layer shares: the daily calendar, the owning team and the freshness promise."""

from datetime import timedelta

import dagster as dg

from resources.settings import Settings

DAILY = dg.DailyPartitionsDefinition(start_date=Settings.from_env().partition_start)
"""One partition per landing day."""

OWNERS = ["team:data-platform"]

DAILY_BY_6AM = dg.FreshnessPolicy.cron(
    deadline_cron="0 6 * * *", lower_bound_delta=timedelta(days=1)
)
"""Yesterday's landing day is expected in the lake by 06:00 UTC."""

EVERY_EARLIER_DAY = dg.TimeWindowPartitionMapping(
    start_offset=-36_500, end_offset=0, allow_nonexistent_upstream_partitions=True
)
"""Partition D reads D and all history before it (profiles as of D, every id known by D)."""
