"""Realized model performance once the delayed labels (chargebacks) arrive.

Plain functions over the prediction log: label it as of a date, then measure AUROC, precision and
recall at the logged decision and calibration per day, version and arm, and test whether a
challenger's AUROC differs from the champion's (DeLong).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

LABEL_WINDOW = timedelta(days=45)
"""Chargebacks arrive 1 to 45 days after the payment: after that a label no longer changes."""

FRAUD_REASON = "fraud"


def labels_as_of(
    predictions: pl.DataFrame,
    chargebacks: pl.DataFrame,
    as_of: datetime,
    label_window: timedelta = LABEL_WINDOW,
) -> pl.DataFrame:
    """``predictions`` with ``label`` (a fraud chargeback reported by ``as_of``) and ``mature``.

    Only chargebacks reported at or before ``as_of`` count, so a report computed today can be
    reproduced later. Immature rows (``event_time + label_window > as_of``) are kept: the
    positives known so far are real, and most fraud is reported early, so their metrics are
    usable early warnings, but a missing chargeback may still come, so their positives (hence
    recall-side numbers and the positive rate) are lower bounds. Consumers should show
    ``mature`` (or ``mature_share``) beside every number, or filter on it.
    """
    cutoff = _naive_utc(as_of)
    frauds = (
        chargebacks.filter(
            (pl.col("reason_code") == FRAUD_REASON) & (pl.col("reported_at") <= cutoff)
        )
        .select("transaction_id")
        .drop_nulls()
        .unique()
    )
    return predictions.with_columns(
        pl.col("transaction_id")
        .is_in(frauds["transaction_id"].implode())
        .fill_null(False)
        .cast(pl.Int8)
        .alias("label"),
        (pl.col("event_time") + label_window <= cutoff).alias("mature"),
    )


def realized_performance(
    labelled: pl.DataFrame, by: Sequence[str] = ("day", "model_version", "arm")
) -> pl.DataFrame:
    """Per group: ``n``, ``positives``, ``mature_share``, ``auroc``, ``precision`` and ``recall``
    of the logged decision ``fraud``, ``mean_probability``, ``positive_rate`` and
    ``calibration_gap`` (mean probability minus positive rate; positive: over-predicts fraud).

    ``day`` is the event's UTC date. AUROC is the exact Mann-Whitney statistic with midranks for
    ties, computed from ranks within each group, so there is no per-row Python loop; it is null
    for a group without both classes, as precision is without a flagged row and recall without
    a positive. In shadow mode a request has a row per arm: keep ``arm`` in ``by`` (or filter)
    so that no group counts a transaction twice.
    """
    _check_probabilities(labelled)
    keys = list(by)
    frame = labelled
    if "day" in keys and "day" not in frame.columns:
        frame = frame.with_columns(pl.col("event_time").dt.date().alias("day"))
    if not keys:
        frame = frame.with_columns(pl.lit(0).alias("_all"))
    group = keys or ["_all"]
    positive = pl.col("label") == 1
    counts = (
        frame.with_columns(pl.col("probability").rank("average").over(group).alias("_rank"))
        .group_by(group)
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            positive.sum().cast(pl.Int64).alias("positives"),
            pl.col("mature").mean().alias("mature_share"),
            pl.col("_rank").filter(positive).sum().alias("_positive_ranks"),
            (positive & pl.col("fraud")).sum().alias("_true_positives"),
            pl.col("fraud").sum().alias("_flagged"),
            pl.col("probability").mean().alias("mean_probability"),
        )
    )
    p, n = pl.col("positives"), pl.col("n") - pl.col("positives")
    return (
        counts.with_columns(
            pl.when((p > 0) & (n > 0))
            .then((pl.col("_positive_ranks") - p * (p + 1) / 2) / (p * n))
            .alias("auroc"),
            pl.when(pl.col("_flagged") > 0)
            .then(pl.col("_true_positives") / pl.col("_flagged"))
            .alias("precision"),
            pl.when(p > 0).then(pl.col("_true_positives") / p).alias("recall"),
            (p / pl.col("n")).alias("positive_rate"),
        )
        .with_columns(
            (pl.col("mean_probability") - pl.col("positive_rate")).alias("calibration_gap")
        )
        .select(
            *keys,
            "n",
            "positives",
            "mature_share",
            "auroc",
            "precision",
            "recall",
            "mean_probability",
            "positive_rate",
            "calibration_gap",
        )
        .sort(keys)
    )


@dataclass(frozen=True)
class ArmComparison:
    """AUROC of arm ``a`` and arm ``b`` and a test of their difference (``b`` minus ``a``, so a
    positive difference means the challenger ranks fraud better).

    ``paired``: both arms scored the same transactions (shadow), compared with DeLong's paired
    test on those; otherwise the AUROCs are of independent samples (A/B, canary). AUROCs are
    None for an arm without both classes; ``standard_error`` and ``p_value`` are None unless
    both arms have at least two positives and two negatives. ``n_*``/``positives_*`` count the
    rows the test used.
    """

    a: str
    b: str
    auroc_a: float | None
    auroc_b: float | None
    difference: float | None
    standard_error: float | None
    p_value: float | None
    n_a: int
    n_b: int
    positives_a: int
    positives_b: int
    paired: bool


def compare_arms(
    labelled: pl.DataFrame, a: str = "champion", b: str = "challenger"
) -> ArmComparison:
    """Whether arm ``b``'s AUROC differs from arm ``a``'s, with the test the design allows.

    Arms count as paired when the transactions both scored are at least half of the smaller
    arm: shadow mode, even if the challenger failed on a few batches. A paired test on the common
    transactions is then far more powerful, as both scores share each transaction's difficulty;
    treating them as independent would ignore that correlation. A transaction scored twice by
    one arm (a retry, a batch rescore) counts once. Pass a single deployment and version pair.
    """
    _check_probabilities(labelled)
    rows = labelled.filter(pl.col("arm").is_in([a, b])).unique(
        ["arm", "transaction_id"], keep="first", maintain_order=True
    )
    first = rows.filter(pl.col("arm") == a).select("transaction_id", "probability", "label")
    second = rows.filter(pl.col("arm") == b).select("transaction_id", "probability", "label")
    common = first.join(second.drop("label"), on="transaction_id", suffix="_b")
    paired = common.height > 0 and 2 * common.height >= min(first.height, second.height)
    if paired:
        positive = common["label"].to_numpy() == 1
        scores = common.select("probability", "probability_b").to_numpy().T
        aurocs, covariance = delong(scores, positive)
        variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
        n_a = n_b = common.height
        positives_a = positives_b = int(positive.sum())
    else:
        fits = [
            delong(arm["probability"].to_numpy()[None, :], arm["label"].to_numpy() == 1)
            for arm in (first, second)
        ]
        aurocs = np.array([fit[0][0] for fit in fits])
        variance = sum(fit[1][0, 0] for fit in fits)
        n_a, n_b = first.height, second.height
        positives_a, positives_b = int(first["label"].sum()), int(second["label"].sum())
    difference = aurocs[1] - aurocs[0]
    standard_error = math.sqrt(max(variance, 0.0)) if np.isfinite(variance) else None
    return ArmComparison(
        a=a,
        b=b,
        auroc_a=_finite(aurocs[0]),
        auroc_b=_finite(aurocs[1]),
        difference=_finite(difference),
        standard_error=standard_error,
        p_value=None if standard_error is None else _two_sided_p(difference, standard_error),
        n_a=n_a,
        n_b=n_b,
        positives_a=positives_a,
        positives_b=positives_b,
        paired=paired,
    )


def delong(scores: ArrayLike, positive: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of ``k`` scorers of the same ``N`` rows (``scores`` of shape ``(k, N)``) and
    DeLong's estimate of their ``(k, k)`` covariance.

    The fast midrank algorithm of Sun & Xu (2014): O(k N log N) rather than the O(N^2) pairs of
    the original, so a month of predictions is cheap. AUROCs are NaN without both classes; the
    covariance is NaN unless there are at least two positives and two negatives.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positive = np.asarray(positive, dtype=bool).ravel()
    if scores.shape[1] != positive.size:
        raise ValueError(f"{scores.shape[1]} scores per scorer but {positive.size} labels")
    k = scores.shape[0]
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        return np.full(k, np.nan), np.full((k, k), np.nan)
    x, y = scores[:, positive], scores[:, ~positive]
    tx = np.vstack([_midranks(row) for row in x])
    ty = np.vstack([_midranks(row) for row in y])
    tz = np.vstack([_midranks(row) for row in np.hstack([x, y])])
    aurocs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1) / (2 * n)
    if m < 2 or n < 2:
        return aurocs, np.full((k, k), np.nan)
    # Structural components: each positive's share of negatives ranked below it, and each
    # negative's share of positives ranked above it.
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aurocs, covariance


def calibration(labelled: pl.DataFrame, bins: int = 10) -> pl.DataFrame:
    """Reliability table over ``bins`` equal-width probability bins (only non-empty ones):
    ``bin``, its ``lower``/``upper`` edges, ``mean_predicted``, ``observed_rate`` and ``n``.

    Pass one arm, and mature rows for an unbiased observed rate: immature rows miss the fraud
    not reported yet, which reads as over-prediction.
    """
    _check_probabilities(labelled)
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    width = 1.0 / bins
    return (
        labelled.select(
            (pl.col("probability") * bins).floor().cast(pl.Int64).clip(0, bins - 1).alias("bin"),
            "probability",
            "label",
        )
        .group_by("bin")
        .agg(
            pl.col("probability").mean().alias("mean_predicted"),
            (pl.col("label") == 1).mean().alias("observed_rate"),
            pl.len().cast(pl.Int64).alias("n"),
        )
        .sort("bin")
        .select(
            "bin",
            (pl.col("bin") * width).alias("lower"),
            ((pl.col("bin") + 1) * width).alias("upper"),
            "mean_predicted",
            "observed_rate",
            "n",
        )
    )


def expected_calibration_error(labelled: pl.DataFrame, bins: int = 10) -> float:
    """Row-weighted mean of |mean predicted - observed rate| over the reliability bins; NaN
    without rows. A threshold tuned on probabilities silently moves when this grows."""
    table = calibration(labelled, bins)
    if table.is_empty():
        return math.nan
    gap = (table["mean_predicted"] - table["observed_rate"]).abs()
    return float((gap * table["n"]).sum() / table["n"].sum())


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]


def _two_sided_p(difference: float, standard_error: float) -> float:
    if standard_error == 0.0:
        return 1.0 if difference == 0.0 else 0.0
    return math.erfc(abs(difference) / standard_error / math.sqrt(2.0))


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _check_probabilities(labelled: pl.DataFrame) -> None:
    """A NaN probability would rank arbitrarily and corrupt every metric of its group."""
    bad = labelled.select(
        (pl.col("probability").is_null() | pl.col("probability").is_nan()).sum()
    ).item()
    if bad:
        raise ValueError(f"{bad} predictions have no probability (null or NaN)")


def _naive_utc(moment: datetime) -> datetime:
    """The log's timestamps are naive UTC; an aware ``as_of`` is converted to match."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)
