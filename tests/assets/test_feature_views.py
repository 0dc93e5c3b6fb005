"""Feature views compute what they declare, and a new view is one new file."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from assets.features.customer_activity import CUSTOMER_ACTIVITY
from assets.features.merchant_risk import MERCHANT_RISK
from feature_store.offline import build_feature_rows
from feature_store.views import EVENT_TIMESTAMP, EventWindow, Feature, FeatureView

ROOT = Path(__file__).resolve().parents[2]
DAY = EventWindow(datetime(2024, 1, 8), datetime(2024, 1, 9))


def transactions(n: int = 400, seed: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 8 * 24 * 60, n)
    return pl.DataFrame(
        {
            "customer_id": rng.choice(["C1", "C2", "C3"], n),
            "merchant_id": rng.choice(["M1", "M2", "M3", "M4"], n),
            "event_time": [datetime(2024, 1, 1) + timedelta(minutes=int(m)) for m in minutes],
            "amount": rng.uniform(1, 100, n).round(2),
            "is_fraud": rng.random(n) < 0.2,
            "label_known_at": [
                datetime(2024, 1, 1) + timedelta(minutes=int(m) + int(d) * 60)
                for m, d in zip(minutes, rng.integers(1, 200, n), strict=True)
            ],
        }
    )


def test_customer_activity_matches_its_definition() -> None:
    source = transactions()
    rows = build_feature_rows(CUSTOMER_ACTIVITY, source.lazy(), DAY, datetime(2024, 2, 1))
    assert rows.height > 0
    assert rows[EVENT_TIMESTAMP].min() >= DAY.start
    for row in rows.sample(n=40, seed=1).iter_rows(named=True):
        t = row[EVENT_TIMESTAMP]
        mine = source.filter(pl.col("customer_id") == row["customer_id"])

        def within(span: timedelta, frame: pl.DataFrame = mine, t: datetime = t) -> pl.DataFrame:
            return frame.filter((pl.col("event_time") > t - span) & (pl.col("event_time") <= t))

        assert row["txn_count_1h"] == within(timedelta(hours=1)).height
        assert row["amount_sum_24h"] == pytest.approx(within(timedelta(days=1))["amount"].sum())
        assert row["txn_count_7d"] == within(timedelta(days=7)).height
        assert row["distinct_merchants_24h"] == within(timedelta(days=1))["merchant_id"].n_unique()
        assert row["amount_mean_30d"] == pytest.approx(within(timedelta(days=30))["amount"].mean())
        earlier = mine.filter(pl.col("event_time") < t)["event_time"]
        expected_gap = (t - earlier.max()).total_seconds() if earlier.len() else None
        assert row["seconds_since_previous"] == expected_gap


def test_merchant_risk_uses_only_labels_known_by_then() -> None:
    source = transactions()
    rows = build_feature_rows(MERCHANT_RISK, source.lazy(), DAY, datetime(2024, 2, 1))
    as_of = DAY.end - timedelta(microseconds=1)
    recent = source.filter(pl.col("event_time") >= DAY.end - timedelta(days=30))
    for row in rows.iter_rows(named=True):
        mine = recent.filter(pl.col("merchant_id") == row["merchant_id"])
        known = mine.filter(pl.col("is_fraud") & (pl.col("label_known_at") <= as_of))
        assert row[EVENT_TIMESTAMP] == as_of
        assert row["transactions_30d"] == mine.height
        assert row["fraud_chargebacks_30d"] == known.height
    all_fraud = recent.filter(pl.col("is_fraud")).height
    assert rows["fraud_chargebacks_30d"].sum() < all_fraud, "late labels must not count yet"


def broken_view(transform: object) -> FeatureView:
    return FeatureView(
        name="broken",
        entity=CUSTOMER_ACTIVITY.entity,
        source=("gold", "labeled_transactions"),
        transform=transform,  # type: ignore[arg-type]
        features=(Feature("total", pl.Float64(), "sum"),),
        ttl=timedelta(days=1),
        owner="team:test",
        freshness_sla=timedelta(days=1),
        description="test",
    )


def test_a_transform_that_breaks_its_declaration_fails_loudly() -> None:
    def missing(frame: pl.LazyFrame, window: EventWindow) -> pl.LazyFrame:
        return frame.select("customer_id", pl.col("event_time").alias(EVENT_TIMESTAMP))

    def wrong_type(frame: pl.LazyFrame, window: EventWindow) -> pl.LazyFrame:
        return frame.select(
            "customer_id",
            pl.col("event_time").alias(EVENT_TIMESTAMP),
            pl.col("amount").cast(pl.Int64).alias("total"),
        )

    source = transactions().lazy()
    with pytest.raises(ValueError, match=r"did not produce \['total'\]"):
        build_feature_rows(broken_view(missing), source, DAY, datetime(2024, 2, 1))
    with pytest.raises(TypeError, match="total"):
        build_feature_rows(broken_view(wrong_type), source, DAY, datetime(2024, 2, 1))


def test_rows_the_window_cannot_hold_fail_instead_of_vanishing() -> None:
    """An event dated after its day would otherwise be cut from every partition unseen."""
    late = transactions().with_columns(pl.col("event_time") + timedelta(days=1))
    with pytest.raises(ValueError, match="dated at or after the window's end"):
        build_feature_rows(CUSTOMER_ACTIVITY, late.lazy(), DAY, datetime(2024, 2, 1))
