"""A gate that blocks, blocks: in the run, in later runs, in the schedule, and for missing input.

A failing blocking check stops everything downstream and says which check and which rows; a
partition that failed or never arrived stops every later run that would read it, with the reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from medallion.landing import read_landing_file
from reference_data import generate
from resources import Lakehouse, Settings
from tests.conftest import RunDay, days_of, with_config

GOLD = dg.AssetKey(["gold", "labeled_transactions"])
CUSTOMER_ACTIVITY = dg.AssetKey(["features", "customer_activity"])

DOWNSTREAM_OF_SILVER_TRANSACTIONS = [
    dg.AssetKey(["silver", "chargebacks"]),
    dg.AssetKey(["gold", "labeled_transactions"]),
]


def corrupt_amounts(path: Path, share: float) -> int:
    """Rewrite a landing file with a share of its amounts made negative, as a broken feed would."""
    frame = read_landing_file(path).frame
    bad = pl.int_range(pl.len()) < int(frame.height * share)
    frame = frame.with_columns(
        pl.when(bad).then(-pl.col("amount").cast(pl.Float64)).otherwise("amount").alias("amount")
    )
    path.unlink()
    frame.write_csv(path.with_suffix(".csv"))
    return int(frame.height * share)


def test_blocking_check_stops_downstream_now_and_later(
    settings: Settings,
    lakehouse: Lakehouse,
    run_day: RunDay,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
) -> None:
    config = with_config(days=2, extra_column_day=None, renamed_column_day=None)
    summary = generate(config, Path(settings.landing_uri))
    good_day, bad_day = days_of(config)
    file = summary.file("transactions", config.start + timedelta(days=1))
    corrupted = corrupt_amounts(file.path, share=0.3)

    assert run_day(good_day).success
    result = run_day(bad_day)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "quarantine_rate" in str(failure.event_specific_data.error)
    evaluation = next(
        e
        for e in result.get_asset_check_evaluations()
        if (e.asset_key.to_user_string(), e.check_name)
        == ("silver/transactions", "quarantine_rate")
    )
    assert not evaluation.passed
    assert evaluation.metadata["quarantined_rows"].value >= corrupted
    assert (
        evaluation.metadata["failed_checks"].value["amount: greater_than_or_equal_to(0.01)"]
        >= corrupted
    )
    sample = [record.data for record in evaluation.metadata["sample"].value.records]
    assert sample and all(
        "amount: greater_than_or_equal_to(0.01)" in row["failed_checks"] for row in sample
    )

    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["silver", "transactions_quarantine"]) in materialized
    assert not materialized & set(DOWNSTREAM_OF_SILVER_TRANSACTIONS)
    gold_days = lakehouse.scan("gold/labeled_transactions").select("_partition_date").collect()
    assert set(gold_days["_partition_date"]) == {good_day}

    # Checks are kept per day: a later success of another day does not hide this failure.
    assert materialize_alone(
        defs, instance, dg.AssetKey(["silver", "transactions"]), good_day
    ).success
    check = dg.AssetCheckKey(dg.AssetKey(["silver", "transactions"]), "quarantine_rate")
    latest = {
        info.partition_key: info.latest_execution_status.value
        for info in instance.event_log_storage.get_asset_check_partition_info([check])
    }
    assert latest == {good_day: "SUCCEEDED", bad_day: "FAILED"}

    # A later run (the nightly relabelling, a click in the UI) must not read the failed day either.
    relabel = run_day(good_day, "relabel_gold")
    assert not relabel.success
    assert f"silver/chargebacks {bad_day} failed its last run" in failure_text(relabel)
    assert set(lakehouse.scan("gold/labeled_transactions").collect()["_partition_date"]) == {
        good_day
    }

    schedule = next(s for s in defs.schedules if s.name == "relabel_gold_schedule")
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime.combine(
            config.start + timedelta(days=2), datetime.min.time()
        ),
        repository_def=defs.get_repository_def(),
    ) as context:
        tick = schedule.evaluate_tick(context)
    assert not tick.run_requests
    assert f"{good_day}: silver/chargebacks {bad_day} failed its last run" in tick.skip_message


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(
        str(e.event_specific_data.error)
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    )


def materialize_alone(
    defs: dg.Definitions, instance: dg.DagsterInstance, key: dg.AssetKey, day: str
) -> dg.ExecuteInProcessResult:
    """What a click on "Materialize" for one asset and one day does in the UI."""
    job = defs.resolve_implicit_global_asset_job_def()
    together = dg.AssetSelection.assets(key).required_multi_asset_neighbors()
    return job.execute_in_process(
        asset_selection=list(together.resolve(defs.resolve_asset_graph())),
        partition_key=day,
        instance=instance,
        raise_on_error=False,
    )


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (dg.AssetKey(["bronze", "transactions"]), "nothing has landed in"),
        (
            dg.AssetKey(["silver", "transactions"]),
            "bronze/transactions {day} was never materialized",
        ),
        (GOLD, "silver/transactions {day} was never materialized"),
        (CUSTOMER_ACTIVITY, "gold/labeled_transactions {day} was never materialized"),
        (
            dg.AssetKey(["features", "online"]),
            "features/customer_activity {day} was never materialized",
        ),
    ],
)
def test_a_missing_input_fails_the_run_with_the_reason(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    lakehouse: Lakehouse,
    key: dg.AssetKey,
    reason: str,
) -> None:
    day = "2024-03-05"
    result = materialize_alone(defs, instance, key, day)
    assert not result.success
    assert reason.format(day=day) in failure_text(result)
    assert not result.get_asset_materialization_events()
    assert lakehouse.version(key.to_user_string()) is None


def test_a_day_never_ingested_blocks_the_days_after_it(
    settings: Settings, lakehouse: Lakehouse, run_day: RunDay
) -> None:
    config = with_config(days=3, extra_column_day=None, renamed_column_day=None)
    generate(config, Path(settings.landing_uri))
    first, skipped, third = days_of(config)
    assert run_day(first).success
    result = run_day(third)
    assert not result.success
    assert f"silver/customers {skipped} was never materialized" in failure_text(result)
    for table in ("silver/transactions", "gold/labeled_transactions", "features/customer_activity"):
        assert set(lakehouse.scan(table).collect()["_partition_date"]) == {first}, table
