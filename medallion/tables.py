"""The landing contract: which tables arrive, with which columns, keys and PII.

This is the single place that says what a landing file should look like. The reference data
generator writes to it, bronze compares every file against it to report schema drift, and silver
types and validates rows with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import polars as pl


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    required: bool = True
    pii: bool = False
    description: str = ""
    aliases: tuple[str, ...] = ()
    """Other names this column is known to arrive under; silver reads them as this column."""


@dataclass(frozen=True)
class Reference:
    """``column`` names an entity of ``table`` (by its primary key) known by the same day.

    An entity that arrived but sits in quarantine still exists: a row pointing at it is valid.
    Only a row whose entity never arrived at all is an orphan, and orphans are quarantined.
    """

    column: str
    table: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    primary_key: str
    event_time: str
    columns: tuple[Column, ...]
    description: str = ""
    version_column: str | None = None
    """For versioned entities (profiles): a row is unique by primary key and this column."""
    references: tuple[Reference, ...] = ()
    event_time_tolerance: timedelta | None = timedelta(0)
    """How far an event time may lie outside the day its file landed on; None lifts the day rule
    (a snapshot of old records), leaving only the bounds ``EARLIEST_EVENT`` .. end of that day."""
    pii: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pii", tuple(c.name for c in self.columns if c.pii))

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def dtypes(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}

    @property
    def unique_key(self) -> list[str]:
        return [self.primary_key] + ([self.version_column] if self.version_column else [])

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def known_safe(self, name: str) -> bool:
        """A column known not to hold PII: a non-PII contract column, by its name or an alias."""
        return any(not c.pii and name in (c.name, *c.aliases) for c in self.columns)

    def unsafe_columns(self, columns: list[str]) -> list[str]:
        """Columns to pseudonymize before anything is shown or kept outside bronze.

        In a table holding PII every column that is not known to be safe counts as PII, so a
        renamed ``email`` (``e_mail``) is protected like the real one.
        """
        if not self.pii:
            return []
        return [c for c in columns if not self.known_safe(c)]


TIMESTAMP = pl.Datetime("us")
EARLIEST_EVENT = "2000-01-01"
"""No event of this business predates it; an older time is a data error (1900, the epoch)."""

CUSTOMERS = TableSpec(
    name="customers",
    primary_key="customer_id",
    event_time="updated_at",
    version_column="updated_at",
    description="Customer profile versions; a customer appears again whenever the profile changes.",
    columns=(
        Column("customer_id", pl.String(), description="Customer identifier."),
        Column("email", pl.String(), pii=True, description="Contact e-mail (PII)."),
        Column("card_number", pl.String(), pii=True, description="Primary card PAN (PII)."),
        Column("country", pl.String(), description="ISO 3166 alpha-2 home country."),
        Column("segment", pl.String(), description="retail, premium or business."),
        Column("age_band", pl.String(), description="Age band, e.g. 26-35."),
        Column("updated_at", TIMESTAMP, description="When this profile version took effect."),
    ),
)

MERCHANTS = TableSpec(
    name="merchants",
    primary_key="merchant_id",
    event_time="created_at",
    description="Merchants accepting card payments.",
    columns=(
        Column("merchant_id", pl.String(), description="Merchant identifier."),
        Column("category", pl.String(), description="Merchant category, e.g. grocery."),
        Column("country", pl.String(), description="ISO 3166 alpha-2 country of the merchant."),
        Column("created_at", TIMESTAMP, description="When the merchant was onboarded."),
    ),
)

TRANSACTIONS = TableSpec(
    name="transactions",
    primary_key="transaction_id",
    event_time="event_time",
    description="Card payment authorisations.",
    references=(Reference("customer_id", "customers"), Reference("merchant_id", "merchants")),
    columns=(
        Column("transaction_id", pl.String(), description="Transaction identifier."),
        Column("customer_id", pl.String(), description="Paying customer."),
        Column("merchant_id", pl.String(), description="Receiving merchant."),
        Column("amount", pl.Float64(), aliases=("amount_eur",), description="Amount in EUR."),
        Column("currency", pl.String(), description="ISO 4217 currency of the amount."),
        Column("channel", pl.String(), description="pos, online or contactless."),
        Column("device", pl.String(), required=False, description="mobile, desktop or terminal."),
        Column("event_time", TIMESTAMP, description="Authorisation time (UTC)."),
    ),
)

CHARGEBACKS = TableSpec(
    name="chargebacks",
    primary_key="chargeback_id",
    event_time="reported_at",
    description="Disputes filed against transactions; they arrive 1 to 45 days late.",
    references=(Reference("transaction_id", "transactions"),),
    columns=(
        Column("chargeback_id", pl.String(), description="Chargeback identifier."),
        Column("transaction_id", pl.String(), description="Disputed transaction."),
        Column("reported_at", TIMESTAMP, description="When the chargeback became known."),
        Column("reason_code", pl.String(), description="Scheme reason code, e.g. fraud."),
        Column("amount", pl.Float64(), description="Disputed amount in EUR."),
    ),
)

LANDING_TABLES: dict[str, TableSpec] = {
    spec.name: spec for spec in (CUSTOMERS, MERCHANTS, TRANSACTIONS, CHARGEBACKS)
}

FORMATS = ("parquet", "csv", "jsonl", "avro")
"""Landing file formats, named by their file extension."""

# Value domains: the generator draws from them and the silver contracts accept only them.
COUNTRIES = (
    "DE",
    "FR",
    "NL",
    "ES",
    "IT",
    "BE",
    "AT",
    "PL",
    "SE",
    "IE",
    "PT",
    "US",
    "GB",
    "NG",
    "BR",
)
SEGMENTS = ("retail", "premium", "business")
AGE_BANDS = ("18-25", "26-35", "36-45", "46-55", "56-65", "66+")
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
CHANNELS = ("pos", "contactless", "online")
DEVICES = ("terminal", "mobile", "desktop")
CURRENCIES = ("EUR",)
REASON_CODES = ("fraud", "not_received", "not_as_described", "duplicate_charge")
MIN_AMOUNT = 0.01
"""One cent: a smaller positive amount (1e-320) is no payment, it is a broken number."""
MAX_AMOUNT = 50_000.0
"""Largest plausible single card payment in EUR; anything above is a data error."""
