"""A failing blocking gate stops everything downstream and says which check and which rows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from medallion.landing import read_landing_file
from reference_data import generate
from resources import Lakehouse, Settings
from tests.conftest import RunDay, days_of, with_config

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


def test_blocking_check_stops_downstream(
    settings: Settings, lakehouse: Lakehouse, run_day: RunDay
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
    assert evaluation.metadata["failed_checks"].value["amount: greater_than(0)"] >= corrupted
    sample = evaluation.metadata["sample"].value
    assert sample and all("amount: greater_than(0)" in row["failed_checks"] for row in sample)

    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["silver", "transactions_quarantine"]) in materialized
    assert not materialized & set(DOWNSTREAM_OF_SILVER_TRANSACTIONS)
    gold_days = lakehouse.scan("gold/labeled_transactions").select("_partition_date").collect()
    assert set(gold_days["_partition_date"]) == {good_day}
