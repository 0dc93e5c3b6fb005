"""Daily ingest of one landing day, and the nightly relabelling of gold as chargebacks arrive."""

import dagster as dg

from assets.gold import KEY as GOLD_KEY
from assets.gold import LABEL_DELAY_DAYS, labeled_transactions
from factories.conventions import DAILY
from factories.readiness import unready_inputs

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
    """Chargebacks land up to LABEL_DELAY_DAYS late: refresh every gold day they can still touch.

    Only days gold was built for are relabelled (building a day is the daily ingest's job), and
    only those whose inputs are sound: each other day is named in the tick's log with the reason,
    and a tick with nothing to do says why in its skip reason.
    """
    now = context.scheduled_execution_time
    days = DAILY.get_partition_keys(current_time=now)[-LABEL_DELAY_DAYS:]
    built = context.instance.get_status_by_partition(GOLD_KEY, days, DAILY) or {}
    unready = {
        day: reasons
        for day in days
        if built.get(day) is not None
        and (reasons := unready_inputs(context.instance, labeled_transactions, day, now))
    }
    for day, reasons in unready.items():
        context.log.warning(f"gold {day} not relabelled: {'; '.join(reasons)}")
    ready = [day for day in days if built.get(day) is not None and day not in unready]
    if not ready:
        why = "; ".join(f"{day}: {reasons[0]}" for day, reasons in unready.items())
        return dg.SkipReason(
            f"no gold day of the last {LABEL_DELAY_DAYS} is ready to relabel"
            + (f" ({why})" if why else ": none was ever built")
        )
    return [
        dg.RunRequest(
            run_key=f"relabel-{day}-{now:%Y%m%d}", partition_key=day, tags={"relabel_day": day}
        )
        for day in ready
    ]
