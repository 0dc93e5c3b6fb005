"""Merchants, sent once when they are onboarded."""

import polars as pl

from assets.sources._domains import COUNTRIES
from medallion.sources import TIMESTAMP, Column, SourceTable

CATEGORIES = (
    "grocery",
    "fuel",
    "restaurants",
    "fashion",
    "travel",
    "electronics",
    "digital_goods",
    "gaming",
)

MERCHANTS = SourceTable(
    name="merchants",
    primary_key="merchant_id",
    event_time="created_at",
    description="Merchants accepting card payments.",
    columns=(
        Column("merchant_id", pl.String(), description="Merchant identifier."),
        Column(
            "category",
            pl.String(),
            allowed=CATEGORIES,
            description="Merchant category, e.g. grocery.",
        ),
        Column(
            "country",
            pl.String(),
            allowed=COUNTRIES,
            description="ISO 3166 alpha-2 country of the merchant.",
        ),
        Column("created_at", TIMESTAMP, description="When the merchant was onboarded."),
    ),
)
