"""Daily ingest of one landing day, and the nightly rebuild of gold days as late inputs arrive."""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from factories.policies import INGEST_GROUPS
from factories.readiness import unready_inputs
from medallion.derived import DerivedTable
from resources.lakehouse_io import asset_key


def daily_ingest(
    freshness: dg.AssetSelection,
) -> tuple[UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """``freshness``, the deadline's checks, stay out: they judge the night as a whole, at the
    deadline, where a run of one day (a backfill's included) would judge yesterday's."""
    job = dg.define_asset_job(
        "daily_ingest",
        selection=dg.AssetSelection.groups(*INGEST_GROUPS) - freshness,
        description="Ingest one landing day through bronze, silver and gold with every quality "
        "gate, then compute its features offline and push the newest values online.",
    )
    schedule = dg.build_schedule_from_partitioned_job(
        job, hour_of_day=2, description="Yesterday's landing files, every night at 02:00."
    )
    return job, schedule


def relabel_gold(
    late: list[DerivedTable],
    assets: dict[dg.AssetKey, dg.AssetsDefinition],
    freshness: dg.AssetSelection,
) -> tuple[UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """Rebuild the derived tables that read days after their own (labels that land late).

    Each night every day such an input can still touch is refreshed: only days built before
    (building a day is the daily ingest's job), and only those whose inputs are sound; each
    other day is named in the tick's log with the reason, and a tick with nothing to do says
    why in its skip reason.
    """
    keys = [asset_key(table.table) for table in late]
    reach = max(read.days.after for table in late for read in table.inputs.values())
    job = dg.define_asset_job(
        "relabel_gold",
        selection=dg.AssetSelection.assets(*keys) - freshness,
        description=f"Rebuild gold days of the last {reach} so late labels (chargebacks) that "
        "arrived since are in them.",
    )

    @dg.schedule(job=job, cron_schedule="0 3 * * *", execution_timezone="UTC")
    def relabel_gold_schedule(context: dg.ScheduleEvaluationContext):
        now = context.scheduled_execution_time
        daily = assets[keys[0]].partitions_def
        days = daily.get_partition_keys(current_time=now)[-reach:]
        built = {
            day
            for key in keys
            for day, status in (
                context.instance.get_status_by_partition(key, days, daily) or {}
            ).items()
            if status is not None
        }
        unready = {
            day: reasons
            for day in sorted(built)
            if (
                reasons := [
                    r for k in keys for r in unready_inputs(context.instance, assets[k], day, now)
                ]
            )
        }
        for day, reasons in unready.items():
            context.log.warning(f"gold {day} not relabelled: {'; '.join(reasons)}")
        ready = [day for day in days if day in built and day not in unready]
        if not ready:
            why = "; ".join(f"{day}: {reasons[0]}" for day, reasons in unready.items())
            return dg.SkipReason(
                f"no gold day of the last {reach} is ready to relabel"
                + (f" ({why})" if why else ": none was ever built")
            )
        return [
            dg.RunRequest(
                run_key=f"relabel-{day}-{now:%Y%m%d}", partition_key=day, tags={"relabel_day": day}
            )
            for day in ready
        ]

    return job, relabel_gold_schedule
