"""Daily ingest of one landing day, and the nightly relabelling of gold as chargebacks arrive."""

import dagster as dg

from assets.conventions import DAILY
from assets.gold import KEY as GOLD_KEY
from assets.gold import LABEL_DELAY_DAYS

daily_ingest = dg.define_asset_job(
    "daily_ingest",
    selection=dg.AssetSelection.groups("bronze", "silver", "gold", "features"),
    description="Ingest one landing day through bronze, silver and gold with every quality gate, "
    "then compute its features offline and push the newest values online.",
)

daily_ingest_schedule = dg.build_schedule_from_partitioned_job(
    daily_ingest, hour_of_day=2, description="Yesterday's landing files, every night at 02:00."
)

relabel_gold = dg.define_asset_job(
    "relabel_gold",
    selection=dg.AssetSelection.assets(GOLD_KEY),
    description="Rebuild one gold day so chargebacks that arrived since carry their label.",
)


@dg.schedule(job=relabel_gold, cron_schedule="0 3 * * *", execution_timezone="UTC")
def relabel_gold_schedule(context: dg.ScheduleEvaluationContext):
    """Chargebacks land up to LABEL_DELAY_DAYS late: refresh every gold day they can still touch."""
    days = DAILY.get_partition_keys(current_time=context.scheduled_execution_time)
    for day in days[-LABEL_DELAY_DAYS:]:
        yield dg.RunRequest(
            run_key=f"relabel-{day}-{context.scheduled_execution_time:%Y%m%d}", partition_key=day
        )
