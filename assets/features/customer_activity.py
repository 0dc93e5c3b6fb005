"""Feature view: how a customer has been spending, as of each of their transactions."""

from datetime import timedelta

import polars as pl

from assets.entities import CUSTOMER
from feature_store.views import EVENT_TIMESTAMP, EventWindow, Feature, FeatureView, RequestFeature

WINDOWS = {"1h": "1h", "24h": "24h", "7d": "7d"}


def customer_activity(transactions: pl.LazyFrame, window: EventWindow) -> pl.LazyFrame:
    """Rolling counts and sums per customer, each window ending at (and including) a transaction."""
    ordered = transactions.select("customer_id", "event_time", "amount", "merchant_id").sort(
        "customer_id", "event_time"
    )
    rolling = [
        expr
        for label, period in WINDOWS.items()
        for expr in (
            pl.col("amount")
            .is_not_null()
            .cast(pl.Int64)
            .rolling_sum_by("event_time", window_size=period)
            .over("customer_id")
            .alias(f"txn_count_{label}"),
            pl.col("amount")
            .rolling_sum_by("event_time", window_size=period)
            .over("customer_id")
            .alias(f"amount_sum_{label}"),
        )
    ]
    distinct_merchants = ordered.rolling(
        index_column="event_time", period="24h", group_by="customer_id"
    ).agg(pl.col("merchant_id").n_unique().cast(pl.Int64).alias("distinct_merchants_24h"))
    return pl.concat(
        [
            ordered.with_columns(
                *rolling,
                pl.col("amount")
                .rolling_mean_by("event_time", window_size="30d")
                .over("customer_id")
                .alias("amount_mean_30d"),
                pl.col("event_time")
                .diff()
                .over("customer_id")
                .dt.total_seconds(fractional=True)
                .alias("seconds_since_previous"),
            ),
            distinct_merchants.select("distinct_merchants_24h"),
        ],
        how="horizontal",
    ).rename({"event_time": EVENT_TIMESTAMP})


CUSTOMER_ACTIVITY = FeatureView(
    name="customer_activity",
    entity=CUSTOMER,
    source=("gold", "labeled_transactions"),
    transform=customer_activity,
    features=(
        *(
            feature
            for label in WINDOWS
            for feature in (
                Feature(f"txn_count_{label}", pl.Int64(), f"Transactions in the last {label}."),
                Feature(f"amount_sum_{label}", pl.Float64(), f"EUR spent in the last {label}."),
            )
        ),
        Feature("distinct_merchants_24h", pl.Int64(), "Distinct merchants paid in the last 24h."),
        Feature("amount_mean_30d", pl.Float64(), "Mean payment in EUR over the last 30 days."),
        Feature(
            "seconds_since_previous",
            pl.Float64(),
            "Seconds since the customer's previous transaction (within 30 days).",
        ),
    ),
    ttl=timedelta(days=30),
    lookback=timedelta(days=30),
    owner="team:fraud-data-science",
    freshness_sla=timedelta(hours=30),
    description="Spending velocity of a customer, updated at every transaction.",
)

AMOUNT_TO_MEAN_30D = RequestFeature(
    name="amount_to_mean_30d",
    dtype=pl.Float64(),
    description="The requested amount over the customer's 30-day mean payment.",
    request_fields={"amount": pl.Float64()},
    inputs=("customer_activity:amount_mean_30d",),
    expression=pl.col("amount") / pl.col("amount_mean_30d"),
)
