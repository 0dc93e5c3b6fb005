"""Customer profiles, sent again whenever a profile changes."""

import polars as pl

from assets.sources._domains import COUNTRIES
from medallion.sources import TIMESTAMP, Column, SourceTable

SEGMENTS = ("retail", "premium", "business")
AGE_BANDS = ("18-25", "26-35", "36-45", "46-55", "56-65", "66+")

CUSTOMERS = SourceTable(
    name="customers",
    primary_key="customer_id",
    event_time="updated_at",
    version_column="updated_at",
    description="Customer profile versions; a customer appears again whenever the profile changes.",
    columns=(
        Column("customer_id", pl.String(), description="Customer identifier."),
        Column(
            "email",
            pl.String(),
            pii=True,
            pattern=r"^[^@\s]+@[^@\s]+$",
            description="Contact e-mail (PII).",
        ),
        Column(
            "card_number",
            pl.String(),
            pii=True,
            pattern=r"^\d{12,19}$",
            description="Primary card PAN (PII).",
        ),
        Column(
            "country",
            pl.String(),
            allowed=COUNTRIES,
            description="ISO 3166 alpha-2 home country.",
        ),
        Column(
            "segment", pl.String(), allowed=SEGMENTS, description="retail, premium or business."
        ),
        Column("age_band", pl.String(), allowed=AGE_BANDS, description="Age band, e.g. 26-35."),
        Column("updated_at", TIMESTAMP, description="When this profile version took effect."),
    ),
)
