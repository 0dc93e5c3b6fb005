"""Card payment authorisations, the events the fraud model scores."""

import polars as pl

from assets.sources._domains import MAX_AMOUNT, MIN_AMOUNT
from medallion.sources import TIMESTAMP, Column, Reference, SourceTable

CHANNELS = ("pos", "contactless", "online")
DEVICES = ("terminal", "mobile", "desktop")
CURRENCIES = ("EUR",)

TRANSACTIONS = SourceTable(
    name="transactions",
    primary_key="transaction_id",
    event_time="event_time",
    description="Card payment authorisations.",
    references=(Reference("customer_id", "customers"), Reference("merchant_id", "merchants")),
    columns=(
        Column("transaction_id", pl.String(), description="Transaction identifier."),
        Column("customer_id", pl.String(), description="Paying customer."),
        Column("merchant_id", pl.String(), description="Receiving merchant."),
        Column(
            "amount",
            pl.Float64(),
            aliases=("amount_eur",),
            minimum=MIN_AMOUNT,
            maximum=MAX_AMOUNT,
            description="Amount in EUR.",
        ),
        Column(
            "currency",
            pl.String(),
            allowed=CURRENCIES,
            description="ISO 4217 currency of the amount.",
        ),
        Column("channel", pl.String(), allowed=CHANNELS, description="pos, online or contactless."),
        Column(
            "device",
            pl.String(),
            required=False,
            allowed=DEVICES,
            description="mobile, desktop or terminal.",
        ),
        Column("event_time", TIMESTAMP, description="Authorisation time (UTC)."),
    ),
)
