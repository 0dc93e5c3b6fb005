"""Drift from profiles: no false alarm on stationary data after calibration, critical findings for
exactly the drifted columns, hand-computed effect sizes, schema findings."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from monitoring.drift import DEFAULT, Level, Thresholds, calibrate, drift_report, psi, worst
from monitoring.profiles import merge, profile

CATEGORIES = ["grocery", "travel", "fuel", "online", "restaurant"]


def _day(seed: int, n: int = 3000, shift: float = 0.0, new_category: str | None = None):
    """A day of a feature table; ``shift`` moves the amount's mean by that many stddevs and
    ``new_category`` takes half the rows of the category column."""
    rng = np.random.default_rng(seed)
    category = rng.choice(CATEGORIES, n, p=[0.35, 0.25, 0.2, 0.15, 0.05])
    if new_category is not None:
        category = np.where(rng.random(n) < 0.5, new_category, category)
    frame = pl.DataFrame(
        {
            "amount": rng.normal(100 + 25 * shift, 25, n),
            "count_7d": rng.poisson(4, n),
            "probability": rng.beta(2, 30, n),
            "category": category,
            "country": rng.choice(["FR", "DE", "US"], n),
        }
    ).with_columns(  # 5% nulls in amount, at random
        pl.when(pl.lit(rng.random(n) < 0.05)).then(None).otherwise(pl.col("amount")).alias("amount")
    )
    return profile(frame)


@pytest.fixture(scope="module")
def reference():
    return merge([_day(seed) for seed in range(3)])


@pytest.fixture(scope="module")
def thresholds(reference) -> Thresholds:
    return calibrate(reference, [_day(seed) for seed in range(10, 14)])


def _graded(report: pl.DataFrame) -> pl.DataFrame:
    return report.filter(pl.col("warning").is_not_null())


@pytest.mark.parametrize("seed", range(100, 105))
def test_stationary_days_raise_no_alarm(reference, thresholds, seed: int) -> None:
    report = drift_report(reference, _day(seed), thresholds)

    assert worst(report) == "info"
    graded = _graded(report)
    assert set(graded.get_column("metric")) == {
        "psi",
        "ks",
        "hellinger",
        "null_share",
        "unseen_share",
    }
    assert (graded.get_column("severity") == "info").all()


def test_shift_and_new_category_are_critical_for_exactly_those_columns(
    reference, thresholds
) -> None:
    report = drift_report(reference, _day(200, shift=1.0, new_category="crypto"), thresholds)

    assert worst(report) == "critical"
    critical = report.filter(pl.col("severity") == "critical")
    assert set(critical.get_column("column")) == {"amount", "category"}
    assert set(critical.filter(pl.col("column") == "amount").get_column("metric")) == {
        "psi",
        "ks",
        "hellinger",
    }
    assert {"psi", "unseen_share"} <= set(
        critical.filter(pl.col("column") == "category").get_column("metric")
    )
    assert report.filter(pl.col("severity") == "warning").is_empty()
    assert report.row(0, named=True)["severity"] == "critical"  # most severe first


def _categorical(counts: dict[str, int]):
    return profile(pl.DataFrame({"c": [v for v, n in counts.items() for _ in range(n)]}))


def _value(report: pl.DataFrame, metric: str, column: str = "c") -> float:
    row = report.filter((pl.col("column") == column) & (pl.col("metric") == metric))
    return row.get_column("value").item()


def test_categorical_effect_sizes_match_hand_computation() -> None:
    reference = _categorical({"a": 500, "b": 300, "c": 200})
    target = _categorical({"a": 300, "b": 300, "c": 300, "new": 100})
    report = drift_report(reference, target)

    r, t = np.array([0.5, 0.3, 0.2, 0.0]), np.array([0.3, 0.3, 0.3, 0.1])
    # The unseen category is an empty bin in the reference: epsilon keeps its term finite.
    expected_psi = 0.2 * math.log(0.5 / 0.3) + 0.1 * math.log(0.3 / 0.2) + 0.1 * math.log(1e3)
    assert _value(report, "psi") == pytest.approx(expected_psi, rel=1e-3)
    assert _value(report, "psi") == pytest.approx(psi(r, t))
    expected_hellinger = math.sqrt(((np.sqrt(t) - np.sqrt(r)) ** 2).sum() / 2)
    assert _value(report, "hellinger") == pytest.approx(expected_hellinger)
    assert _value(report, "unseen_share") == pytest.approx(0.1)


def test_numeric_effect_sizes_match_hand_computation() -> None:
    """Ten values, a hundred rows each (the KLL sketch is exact below 1024 rows); the target moves
    half of the 2s to 5s: every value has a bin of its own whichever deciles the sketch picks."""
    counts = dict.fromkeys(range(10), 100)
    moved = counts | {2: 50, 5: 150}
    reference, target = (
        profile(pl.DataFrame({"x": [v for v, n in c.items() for _ in range(n)]}))
        for c in (counts, moved)
    )
    report = drift_report(reference, target)

    assert _value(report, "psi", "x") == pytest.approx(
        0.05 * math.log(2) + 0.05 * math.log(1.5), rel=1e-6
    )
    assert _value(report, "ks", "x") == pytest.approx(0.05)
    assert _value(report, "hellinger", "x") == pytest.approx(
        math.sqrt(
            ((math.sqrt(0.05) - math.sqrt(0.1)) ** 2 + (math.sqrt(0.15) - math.sqrt(0.1)) ** 2) / 2
        )
    )


def test_schema_findings() -> None:
    rng = np.random.default_rng(5)
    reference = profile(
        pl.DataFrame(
            {"kept": rng.normal(size=500), "dropped": rng.normal(size=500), "code": [1] * 500}
        )
    )
    target = profile(
        pl.DataFrame({"kept": rng.normal(size=500), "code": ["1"] * 500, "extra": [0.5] * 500})
    )
    schema = drift_report(reference, target).filter(pl.col("kind") == "schema")

    findings = {row["column"]: row for row in schema.iter_rows(named=True)}
    assert {c: f["metric"] for c, f in findings.items()} == {
        "dropped": "missing",
        "code": "type_changed",
        "extra": "added",
    }
    assert findings["dropped"]["severity"] == "critical"
    assert findings["code"]["severity"] == findings["extra"]["severity"] == "warning"
    assert findings["code"]["detail"] == "integral -> string"


def test_null_share_change_is_graded() -> None:
    values = np.arange(1000.0)
    reference = profile(pl.DataFrame({"x": values}))
    target = profile(pl.DataFrame({"x": np.where(values < 300, np.nan, values)}))
    report = drift_report(reference, target)

    row = report.filter(pl.col("metric") == "null_share").row(0, named=True)
    assert (row["value"], row["severity"], row["detail"]) == (0.3, "critical", "0.0000 -> 0.3000")


def test_calibration_follows_each_columns_noise(reference) -> None:
    """An id-like column sees new values every day: calibrated on its own noise it stays quiet,
    and the other columns keep the floor instead of inheriting its levels."""

    def day(seed: int):
        rng = np.random.default_rng(seed)
        ids = rng.integers(seed * 10_000, seed * 10_000 + 500, 2000).astype(str)
        return profile(pl.DataFrame({"customer": ids, "amount": rng.normal(100, 25, 2000)}))

    reference = merge([day(1), day(2)])
    thresholds = calibrate(reference, [day(seed) for seed in range(3, 7)])

    assert thresholds.level("customer", "unseen_share").warning == pytest.approx(1.5)
    assert thresholds.level("amount", "psi") == DEFAULT.psi
    assert worst(drift_report(reference, day(9), thresholds)) == "info"
    assert worst(drift_report(reference, day(9))) == "critical"  # the floor alone alarms


def test_calibration_never_goes_below_the_floor(reference) -> None:
    floor = Thresholds(psi=Level(0.3, 0.6))
    thresholds = calibrate(reference, [reference], floor=floor)

    assert thresholds.psi == Level(0.3, 0.6)
    assert thresholds.level("amount", "psi") == Level(0.3, 0.6)
    assert thresholds.level("amount", "ks") == DEFAULT.ks


def test_worst_of_an_empty_report_is_info() -> None:
    view = _categorical({"a": 10})
    assert worst(drift_report(view, view, columns=[])) == "info"
