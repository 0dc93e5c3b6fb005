"""Feature view: who the customer is (country, segment, age band), as of each profile version."""

from datetime import timedelta

import polars as pl

from assets.entities import CUSTOMER
from feature_store.views import EVENT_TIMESTAMP, EventWindow, Feature, FeatureView


def customer_profile(customers: pl.LazyFrame, window: EventWindow) -> pl.LazyFrame:
    """Each profile version, current from the moment it took effect."""
    return customers.select(
        "customer_id",
        pl.col("updated_at").alias(EVENT_TIMESTAMP),
        pl.col("country").alias("customer_country"),
        pl.col("segment").alias("customer_segment"),
        pl.col("age_band").alias("customer_age_band"),
    )


CUSTOMER_PROFILE = FeatureView(
    name="customer_profile",
    entity=CUSTOMER,
    source=("silver", "customers"),
    transform=customer_profile,
    features=(
        Feature("customer_country", pl.String(), "ISO 3166 alpha-2 home country."),
        Feature("customer_segment", pl.String(), "retail, premium or business."),
        Feature("customer_age_band", pl.String(), "Age band, e.g. 26-35."),
    ),
    # A profile stays true until the next version replaces it, however old it is.
    ttl=timedelta(0),
    owner="team:fraud-data-science",
    freshness_sla=timedelta(hours=30),
    description="The customer's profile, one row per version.",
)
