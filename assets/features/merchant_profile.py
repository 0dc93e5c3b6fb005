"""Feature view: what the merchant sells and where, from its onboarding on."""

from datetime import timedelta

import polars as pl

from assets.entities import MERCHANT
from feature_store.views import EVENT_TIMESTAMP, EventWindow, Feature, FeatureView, RequestFeature


def merchant_profile(merchants: pl.LazyFrame, window: EventWindow) -> pl.LazyFrame:
    return merchants.select(
        "merchant_id",
        pl.col("created_at").alias(EVENT_TIMESTAMP),
        pl.col("category").alias("merchant_category"),
        pl.col("country").alias("merchant_country"),
    )


MERCHANT_PROFILE = FeatureView(
    name="merchant_profile",
    entity=MERCHANT,
    source=("silver", "merchants"),
    transform=merchant_profile,
    features=(
        Feature("merchant_category", pl.String(), "Merchant category, e.g. grocery."),
        Feature("merchant_country", pl.String(), "ISO 3166 alpha-2 country of the merchant."),
    ),
    # Merchants are sent once, at onboarding: the profile never expires.
    ttl=timedelta(0),
    owner="team:fraud-data-science",
    freshness_sla=timedelta(hours=30),
    description="The merchant's category and country.",
)

IS_FOREIGN = RequestFeature(
    name="is_foreign",
    dtype=pl.Boolean(),
    description="The merchant is in another country than the customer's home.",
    request_fields={},
    inputs=("customer_profile:customer_country", "merchant_profile:merchant_country"),
    expression=pl.col("customer_country") != pl.col("merchant_country"),
)
