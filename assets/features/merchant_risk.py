"""Feature view: how often a merchant's payments turned out to be fraud, as known at the time."""

from datetime import timedelta

import polars as pl

from assets.entities import MERCHANT
from feature_store.views import EVENT_TIMESTAMP, EventWindow, Feature, FeatureView

RISK_WINDOW = timedelta(days=30)


def merchant_risk(transactions: pl.LazyFrame, window: EventWindow) -> pl.LazyFrame:
    """One row per merchant at the end of the window, over the 30 days before it.

    A chargeback counts only if it was known by then (``label_known_at``), so the rate never
    uses a label from the future, however late the gold table was relabelled.
    """
    as_of = window.end - timedelta(microseconds=1)
    recent = transactions.filter(
        pl.col("event_time").is_between(window.end - RISK_WINDOW, window.end, closed="left")
    )
    known_fraud = (pl.col("label_known_at") <= as_of) & pl.col("is_fraud")
    return recent.group_by("merchant_id").agg(
        pl.len().cast(pl.Int64).alias("transactions_30d"),
        known_fraud.sum().cast(pl.Int64).alias("fraud_chargebacks_30d"),
        known_fraud.mean().cast(pl.Float64).alias("chargeback_rate_30d"),
        pl.col("amount").mean().alias("mean_payment_30d"),
        pl.lit(as_of).alias(EVENT_TIMESTAMP),
    )


MERCHANT_RISK = FeatureView(
    name="merchant_risk",
    entity=MERCHANT,
    source=("gold", "labeled_transactions"),
    transform=merchant_risk,
    features=(
        Feature("transactions_30d", pl.Int64(), "Payments at the merchant in the last 30 days."),
        Feature(
            "fraud_chargebacks_30d",
            pl.Int64(),
            "Of those, payments with a fraud chargeback already known.",
        ),
        Feature("chargeback_rate_30d", pl.Float64(), "Known fraud chargebacks per payment."),
        Feature("mean_payment_30d", pl.Float64(), "Mean payment in EUR over the last 30 days."),
    ),
    ttl=timedelta(days=2),
    lookback=RISK_WINDOW,
    owner="team:fraud-data-science",
    freshness_sla=timedelta(hours=30),
    description="Fraud exposure of a merchant, computed daily from labels known at the time.",
)
