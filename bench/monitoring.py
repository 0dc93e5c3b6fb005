"""Monitoring benchmark: whylogs profiling against a polars floor, and drift reports.

    python bench/monitoring.py [--rows N] [--days D] [--day-rows M] [--repeats R]

Profiling: one seeded feature-table-like frame of ``--rows`` rows (five numeric columns, a
prediction probability among them, two string columns, nulls in three columns), timed three ways
(median of ``--repeats`` after a warm-up, the three taking turns):

- ``ours``: ``monitoring.profiles.profile`` of every column;
- ``floor``: polars computing the same per-column numbers a profile holds: row and null counts,
  mean, std, min, max and the quantiles p01, p05, p10, p25, p50, p75, p90, p95, p99 of every
  numeric column, and the value counts of every string column (not the distinct counts: whylogs
  sketches those too, so the floor is lower than the same work);
- ``anchor``: plain whylogs, ``why.log(pandas=frame.to_pandas())``, once (it is slow).

The goal is ``ours_over_floor`` (our seconds over the floor's) within 3.

Drift: ``--days`` daily profiles of ``--day-rows`` rows each, against a reference merged from 7
other days and thresholds calibrated on 7 more; the amount's mean moves by one stddev in the last
third of the days. Timed: ``calibrate`` once plus one ``drift_report`` per day (profiling the days
is not in it), and apart the effect sizes alone (``calibrate`` over the same days), since most of a
report's time is whylogs' own KS p-value (scipy's exact Kolmogorov distribution). The line also says
how many days came out critical, which must be the drifted ones.

Sensor: the drift sensor's tick (goal: under 1 s) in a temporary Dagster instance holding
``--days`` materialized drift reports (a stand-in asset under the report's key with its metadata
contract, critical from the same day as above): the first tick, which reads every report (a
backfill), and a steady tick after one more day. ``ratio`` is the tick over the 1 s budget.
One JSON line is printed per measurement.
"""

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitoring.drift import calibrate, drift_report, worst
from monitoring.monitors import Monitor
from monitoring.profiles import merge, profile
from resources.lakehouse_io import asset_key
from sensors.drift import drift_sensor

QUANTILES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
REFERENCE_DAYS = 7
STATIONARY_DAYS = 7


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def feature_table(rows: int, seed: int, shift: float = 0.0) -> pl.DataFrame:
    """Rows of a card-payment feature table; ``shift`` moves the amount's mean by that many
    stddevs of its log."""
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "amount": rng.lognormal(3.5 + shift, 1.0, rows),
            "amount_mean_7d": rng.lognormal(3.5, 0.5, rows),
            "txn_count_7d": rng.poisson(6, rows),
            "customer_age_days": rng.integers(0, 3650, rows),
            "probability": rng.beta(1, 40, rows),
            "merchant_category": rng.choice([f"mcc_{i:02d}" for i in range(20)], rows),
            "country": rng.choice(["FR", "DE", "ES", "IT", "NL", "BE", "GB", "US"], rows),
        }
    )
    missing = {"amount_mean_7d": 0.05, "txn_count_7d": 0.01, "merchant_category": 0.02}
    return frame.with_columns(
        pl.when(pl.lit(rng.random(rows) < share)).then(None).otherwise(pl.col(name)).alias(name)
        for name, share in missing.items()
    )


def floor(frame: pl.DataFrame) -> list[pl.DataFrame]:
    """The cheapest polars we found: one eager select, a column's quantiles in one ``quantile``
    call (a lazy ``collect_all`` took 1.3 s here, one quantile per expression 0.5 s)."""
    numeric = [name for name, dtype in frame.schema.items() if dtype.is_numeric()]
    strings = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    stats = [pl.col(c).len().alias(f"{c}_count") for c in frame.columns]
    stats += [pl.col(c).null_count().alias(f"{c}_nulls") for c in frame.columns]
    for c in numeric:
        column = pl.col(c)
        stats += [
            column.mean().alias(f"{c}_mean"),
            column.std().alias(f"{c}_std"),
            column.min().alias(f"{c}_min"),
            column.max().alias(f"{c}_max"),
            column.quantile(list(QUANTILES)).alias(f"{c}_quantiles"),
        ]
    return [frame.select(stats), *(frame.get_column(c).value_counts() for c in strings)]


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def bench_profile(rows: int, repeats: int) -> None:
    log(f"generating {rows:,} rows")
    frame = feature_table(rows, seed=7)
    contenders = {"ours": lambda: profile(frame), "floor": lambda: floor(frame)}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for work in contenders.values():
        work()  # warm-up
    for turn in range(repeats):
        for name, work in contenders.items():
            times[name].append(timed(work))
        log(f"turn {turn + 1}: " + ", ".join(f"{n} {t[-1]:.3f}s" for n, t in times.items()))
    ours, floor_s = (statistics.median(times[name]) for name in ("ours", "floor"))
    log("anchor: why.log(pandas=frame.to_pandas())")
    import whylogs as why

    anchor = timed(lambda: why.log(pandas=frame.to_pandas()).view())
    common = {"bench": "monitoring", "rows": rows, "columns": frame.width}
    emit(
        common
        | {
            "stage": "profile",
            "seconds": round(ours, 3),
            "rows_per_s": round(rows / ours),
            "floor": "polars select of the same counts, moments, quantiles; value counts",
            "floor_seconds": round(floor_s, 3),
            "floor_rows_per_s": round(rows / floor_s),
            "ours_over_floor": round(ours / floor_s, 2),
            "goal_ours_over_floor": 3.0,
            "repeats": repeats,
            "load_avg": round(os.getloadavg()[0], 2),
        }
    )
    emit(
        common
        | {
            "stage": "profile_anchor",
            "anchor": "why.log(pandas=frame.to_pandas())",
            "anchor_seconds": round(anchor, 3),
            "anchor_rows_per_s": round(rows / anchor),
            "ours_seconds": round(ours, 3),
            "anchor_over_ours": round(anchor / ours, 2),
        }
    )


def bench_drift(days: int, day_rows: int) -> None:
    log(f"profiling {REFERENCE_DAYS + STATIONARY_DAYS + days} days of {day_rows:,} rows")
    reference = merge([profile(feature_table(day_rows, seed)) for seed in range(REFERENCE_DAYS)])
    stationary = [
        profile(feature_table(day_rows, REFERENCE_DAYS + i)) for i in range(STATIONARY_DAYS)
    ]
    drifted = set(range(days - days // 3, days))
    targets = [
        profile(feature_table(day_rows, 1000 + day, shift=1.0 if day in drifted else 0.0))
        for day in range(days)
    ]
    started = time.perf_counter()
    thresholds = calibrate(reference, stationary)
    calibrated = time.perf_counter()
    reports = [drift_report(reference, target, thresholds) for target in targets]
    finished = time.perf_counter()
    # calibrate computes the same effect sizes without whylogs' own test: what grading costs.
    effect_sizes = timed(lambda: calibrate(reference, targets))
    critical = {day for day, report in enumerate(reports) if worst(report) == "critical"}
    emit(
        {
            "bench": "monitoring",
            "stage": "drift",
            "days": days,
            "day_rows": day_rows,
            "columns": len(reference.get_columns()),
            "seconds": round(finished - started, 3),
            "calibrate_seconds": round(calibrated - started, 3),
            "per_day_seconds": round((finished - calibrated) / days, 4),
            "effect_sizes_per_day_seconds": round(effect_sizes / days, 4),
            "critical_days": len(critical),
            "drifted_days": len(drifted),
            "same_days": critical == drifted,
        }
    )
    if critical != drifted:
        log(f"MISMATCH critical days {sorted(critical)} != drifted days {sorted(drifted)}")


def bench_sensor(days: int) -> None:
    monitor = Monitor(name="bench", deployment="bench", owner="bench")
    calendar = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    critical_from = days - days // 3

    @dg.asset(key=asset_key(monitor.drift_table), partitions_def=calendar)
    def report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        day = calendar.get_partition_keys().index(context.partition_key)
        return dg.MaterializeResult(
            metadata={
                "worst_severity": "critical" if day >= critical_from else "info",
                "drifted_features": "amount" if day >= critical_from else "",
                "reference_version": "1",
            }
        )

    retrain = dg.define_asset_job("train_bench", selection=[report])
    sensor = drift_sensor(monitor, "train_bench")
    defs = dg.Definitions(assets=[report], jobs=[retrain], sensors=[sensor])
    keys = calendar.get_partition_keys()[: days + 1]
    with dg.instance_for_test() as instance:
        log(f"materializing {days} drift reports in a temporary instance")
        for key in keys[:days]:
            dg.materialize([report], partition_key=key, instance=instance)

        def tick(cursor: str | None) -> tuple[float, dg.SensorResult]:
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, definitions=defs
            ) as context:
                started = time.perf_counter()
                result = sensor(context)
            return time.perf_counter() - started, result

        first_seconds, first = tick(None)
        dg.materialize([report], partition_key=keys[days], instance=instance)
        steady_seconds, _ = tick(first.cursor)
    for measure, seconds, reports in (
        ("first_tick", first_seconds, days),
        ("tick", steady_seconds, 1),
    ):
        emit(
            {
                "bench": "monitoring",
                "stage": "drift_sensor",
                "measure": measure,
                "reports_read": reports,
                "seconds": round(seconds, 4),
                "budget_seconds": 1.0,
                "ratio": round(seconds / 1.0, 4),
                "run_requests": len(first.run_requests or []) if measure == "first_tick" else None,
            }
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows profiled")
    parser.add_argument("--days", type=int, default=30, help="daily profiles drift-reported")
    parser.add_argument("--day-rows", type=int, default=200_000, help="rows in each daily profile")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    bench_profile(args.rows, args.repeats)
    bench_drift(args.days, args.day_rows)
    bench_sensor(args.days)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
