"""Delayed-label performance: labelling as of a date, grouped metrics, DeLong arm comparison,
calibration. Brute-force and bootstrap references stand in for a second implementation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import rankdata

from monitoring.performance import (
    LABEL_WINDOW,
    calibration,
    compare_arms,
    delong,
    expected_calibration_error,
    labels_as_of,
    realized_performance,
)

START = datetime(2024, 3, 1)


def _pair_count_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The definition: the share of (positive, negative) pairs ordered right, ties half."""
    pos, neg = scores[positive][:, None], scores[~positive][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def _rank_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    m, n = positive.sum(), (~positive).sum()
    return float((rankdata(scores)[positive].sum() - m * (m + 1) / 2) / (m * n))


def _scored(
    rng: np.random.Generator, n: int, separation: float, prevalence: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    positive = rng.random(n) < prevalence
    return _sigmoid(separation * positive + rng.normal(size=n) - 2.0), positive


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _frame(
    transaction: np.ndarray, arm: str, probability: np.ndarray, positive: np.ndarray
) -> pl.DataFrame:
    size = len(transaction)
    return pl.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in transaction],
            "event_time": [START + timedelta(hours=int(i) % 72) for i in transaction],
            "model_version": "2" if arm == "challenger" else "1",
            "arm": [arm] * size,
            "probability": probability,
            "fraud": probability >= 0.5,
            "label": positive.astype(np.int8),
            "mature": np.ones(size, dtype=bool),
        }
    )


def _shadow(seed: int, n: int, separation_a: float, separation_b: float) -> pl.DataFrame:
    """Both arms score every transaction; a shared term makes their scores correlated."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.05
    shared = rng.normal(size=n)
    ids = np.arange(n)
    return pl.concat(
        [
            _frame(
                ids, arm, _sigmoid(sep * positive + shared + 0.7 * rng.normal(size=n) - 2), positive
            )
            for arm, sep in (("champion", separation_a), ("challenger", separation_b))
        ]
    )


def _ab(seed: int, n: int, separation_a: float, separation_b: float) -> pl.DataFrame:
    """Each transaction is scored by one arm only."""
    rng = np.random.default_rng(seed)
    parts = []
    for arm, sep, ids in (
        ("champion", separation_a, np.arange(0, n, 2)),
        ("challenger", separation_b, np.arange(1, n, 2)),
    ):
        probability, positive = _scored(rng, len(ids), sep, prevalence=0.05)
        parts.append(_frame(ids, arm, probability, positive))
    return pl.concat(parts)


# DeLong


def test_delong_auroc_matches_pair_count_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores, positive = _scored(rng, 600, 1.0, prevalence=0.2)
    tied = np.vstack([np.round(scores, 1), np.round(scores**2, 2)])

    aurocs, covariance = delong(tied, positive)

    for k in range(2):
        assert aurocs[k] == pytest.approx(_pair_count_auroc(tied[k], positive), abs=1e-12)
    assert covariance.shape == (2, 2)
    assert covariance[0, 1] == pytest.approx(covariance[1, 0])


def test_delong_standard_errors_match_a_bootstrap() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    positive = rng.random(n) < 0.1
    shared = rng.normal(size=n)
    scores = np.vstack(
        [1.0 * positive + shared + rng.normal(size=n), 1.4 * positive + shared + rng.normal(size=n)]
    )
    aurocs, covariance = delong(scores, positive)

    # Stratified, as DeLong's variance holds the class counts fixed.
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    boot = np.empty((300, 2))
    for b in range(len(boot)):
        rows = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        boot[b] = [_rank_auroc(scores[k, rows], positive[rows]) for k in range(2)]

    single = np.sqrt(covariance[0, 0])
    difference = np.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    assert single == pytest.approx(boot[:, 0].std(ddof=1), rel=0.2)
    assert difference == pytest.approx((boot[:, 1] - boot[:, 0]).std(ddof=1), rel=0.2)
    assert aurocs[1] > aurocs[0]


def test_delong_is_undefined_without_both_classes() -> None:
    aurocs, covariance = delong(np.array([0.1, 0.4, 0.8]), np.zeros(3, dtype=bool))
    assert np.isnan(aurocs).all()
    assert np.isnan(covariance).all()


# Arm comparison


def test_shadow_arms_are_paired_and_a_clearly_better_arm_is_significant() -> None:
    result = compare_arms(_shadow(seed=2, n=4000, separation_a=1.0, separation_b=2.0))

    assert result.paired
    assert result.n_a == result.n_b == 4000
    assert result.positives_a == result.positives_b > 0
    assert result.auroc_b > result.auroc_a
    assert result.difference == pytest.approx(result.auroc_b - result.auroc_a)
    assert result.p_value < 0.01


def test_ab_arms_are_unpaired_and_a_clearly_better_arm_is_significant() -> None:
    result = compare_arms(_ab(seed=3, n=8000, separation_a=1.0, separation_b=2.0))

    assert not result.paired
    assert result.n_a == result.n_b == 4000
    assert result.auroc_b > result.auroc_a
    assert result.p_value < 0.01


def test_identical_arms_are_not_significant() -> None:
    assert compare_arms(_shadow(seed=0, n=4000, separation_a=1.5, separation_b=1.5)).p_value > 0.05
    assert compare_arms(_ab(seed=0, n=8000, separation_a=1.5, separation_b=1.5)).p_value > 0.05
    # The test's size: about 5% of seeds reject when nothing differs, not many more.
    rejections = sum(
        compare_arms(_shadow(seed=s, n=2000, separation_a=1.5, separation_b=1.5)).p_value < 0.05
        for s in range(20)
    )
    assert rejections <= 3


def test_paired_uses_common_transactions_when_the_challenger_missed_a_few() -> None:
    shadow = _shadow(seed=5, n=1000, separation_a=1.0, separation_b=1.0)
    missed = pl.col("transaction_id").is_in([f"t{i}" for i in range(50)])
    result = compare_arms(shadow.filter(~((pl.col("arm") == "challenger") & missed)))

    assert result.paired
    assert result.n_a == result.n_b == 950


def test_a_rescored_transaction_counts_once() -> None:
    ab = _ab(seed=6, n=2000, separation_a=1.0, separation_b=1.0)
    assert compare_arms(pl.concat([ab, ab.head(10)])) == compare_arms(ab)


def test_comparison_without_labels_yet_has_no_test() -> None:
    unlabelled = _ab(seed=7, n=200, separation_a=1.0, separation_b=1.0).with_columns(
        pl.lit(0, pl.Int8).alias("label")
    )
    result = compare_arms(unlabelled)
    assert result.auroc_a is None and result.auroc_b is None
    assert result.difference is None and result.standard_error is None and result.p_value is None


# Labels as of a date


def test_labels_as_of_uses_only_fraud_chargebacks_reported_by_then() -> None:
    as_of = datetime(2024, 5, 1)
    predictions = pl.DataFrame(
        {
            "transaction_id": ["early", "late", "other", "none", "edge", "early", "twice"],
            "arm": ["champion"] * 6 + ["challenger"],
            "event_time": [
                as_of - LABEL_WINDOW,  # mature exactly at the window
                as_of - LABEL_WINDOW + timedelta(microseconds=1),
                as_of - timedelta(days=60),
                as_of - timedelta(days=1),
                as_of - timedelta(days=2),
                as_of - LABEL_WINDOW,
                as_of - timedelta(days=50),
            ],
        },
        schema_overrides={"event_time": pl.Datetime("us")},
    )
    chargebacks = pl.DataFrame(
        {
            "chargeback_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
            "transaction_id": ["early", "late", "other", "edge", "twice", "twice"],
            "reported_at": [
                as_of - timedelta(days=10),
                as_of + timedelta(microseconds=1),  # after as_of: not known yet
                as_of - timedelta(days=30),
                as_of,  # at as_of: known
                as_of - timedelta(days=40),
                as_of - timedelta(days=39),
            ],
            "reason_code": ["fraud", "fraud", "not_received", "fraud", "fraud", "fraud"],
            "amount": [10.0] * 6,
        },
        schema_overrides={"reported_at": pl.Datetime("us")},
    )

    labelled = labels_as_of(predictions, chargebacks, as_of)

    assert labelled.height == predictions.height
    assert labelled["label"].to_list() == [1, 0, 0, 0, 1, 1, 1]
    assert labelled["mature"].to_list() == [True, False, True, False, False, True, True]
    # Once the late chargeback is known, it counts.
    later = labels_as_of(predictions, chargebacks, as_of + timedelta(days=1))
    assert later["label"].to_list() == [1, 1, 0, 0, 1, 1, 1]
    # An aware as_of means the same instant as the log's naive UTC.
    aware = labels_as_of(predictions, chargebacks, as_of.replace(tzinfo=UTC))
    assert aware.equals(labelled)


# Realized performance


def _month(seed: int = 8) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    probability, positive = _scored(rng, n, 2.0, prevalence=0.1)
    return pl.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "event_time": [START + timedelta(minutes=int(m)) for m in rng.integers(0, 3 * 1440, n)],
            "model_version": rng.choice(["1", "2"], n),
            "arm": rng.choice(["champion", "challenger"], n),
            "probability": np.round(probability, 2),  # ties
            "fraud": probability >= 0.3,
            "label": positive.astype(np.int8),
            "mature": rng.random(n) < 0.5,
        }
    )


def test_realized_performance_groups_add_up_and_match_brute_force() -> None:
    month = _month()
    table = realized_performance(month)

    assert table.columns[:3] == ["day", "model_version", "arm"]
    assert table.height == 3 * 2 * 2
    assert table["n"].sum() == month.height
    assert table["positives"].sum() == month["label"].sum()

    first = table.row(0, named=True)
    rows = month.filter(
        (pl.col("event_time").dt.date() == first["day"])
        & (pl.col("model_version") == first["model_version"])
        & (pl.col("arm") == first["arm"])
    )
    positive = rows["label"].to_numpy() == 1
    flagged = rows["fraud"].to_numpy()
    probability = rows["probability"].to_numpy()
    assert first["n"] == rows.height
    assert first["auroc"] == pytest.approx(_pair_count_auroc(probability, positive))
    assert first["precision"] == pytest.approx((positive & flagged).sum() / flagged.sum())
    assert first["recall"] == pytest.approx((positive & flagged).sum() / positive.sum())
    assert first["mature_share"] == pytest.approx(rows["mature"].mean())
    assert first["calibration_gap"] == pytest.approx(probability.mean() - positive.mean())


def test_realized_performance_by_nothing_is_one_overall_row() -> None:
    month = _month()
    table = realized_performance(month, by=())
    assert table.height == 1
    assert table["n"].item() == month.height
    assert table["auroc"].item() == pytest.approx(
        _rank_auroc(month["probability"].to_numpy(), month["label"].to_numpy() == 1)
    )


def test_realized_performance_is_null_where_undefined() -> None:
    frame = pl.DataFrame(
        {
            "arm": ["champion", "champion", "challenger", "challenger"],
            "probability": [0.2, 0.9, 0.1, 0.3],
            "fraud": [False, False, False, True],
            "label": pl.Series([0, 0, 1, 1], dtype=pl.Int8),
            "mature": [True, False, True, True],
        }
    )
    table = realized_performance(frame, by=["arm"]).rows_by_key("arm", named=True, unique=True)

    champion, challenger = table["champion"], table["challenger"]
    assert champion["auroc"] is None and challenger["auroc"] is None  # one class each
    assert champion["precision"] is None  # nothing flagged
    assert champion["recall"] is None  # nothing to recall
    assert challenger["precision"] == 1.0 and challenger["recall"] == 0.5
    assert champion["mature_share"] == 0.5


def test_a_missing_probability_is_an_error() -> None:
    frame = _month().with_columns(
        pl.when(pl.col("transaction_id") == "t3")
        .then(float("nan"))
        .otherwise(pl.col("probability"))
        .alias("probability")
    )
    with pytest.raises(ValueError, match="1 predictions have no probability"):
        realized_performance(frame)


# Calibration


def _calibration_frame(
    seed: int, observed: Callable[[np.ndarray], np.ndarray] | None = None
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    probability = rng.random(20_000)
    truth = probability if observed is None else observed(probability)
    return pl.DataFrame(
        {
            "probability": probability,
            "label": (rng.random(probability.size) < truth).astype(np.int8),
        }
    )


def test_reliability_table_covers_every_row() -> None:
    frame = pl.concat(
        [
            _calibration_frame(9),
            pl.DataFrame(
                {"probability": [1.0, 0.0], "label": [1, 0]}, schema_overrides={"label": pl.Int8}
            ),
        ]
    )
    table = calibration(frame, bins=10)

    assert table["bin"].to_list() == list(range(10))
    assert table["n"].sum() == frame.height
    assert (
        (table["mean_predicted"] >= table["lower"]) & (table["mean_predicted"] <= table["upper"])
    ).all()


def test_expected_calibration_error() -> None:
    assert expected_calibration_error(_calibration_frame(10)) < 0.02
    assert expected_calibration_error(_calibration_frame(10, observed=lambda p: p**3)) > 0.2
    assert np.isnan(expected_calibration_error(_calibration_frame(10).clear()))
