"""Chargebacks: the fraud labels, which arrive 1 to 45 days after the payment."""

import polars as pl

from assets.sources._domains import MAX_AMOUNT, MIN_AMOUNT
from medallion.sources import TIMESTAMP, Column, Reference, SourceTable

REASON_CODES = ("fraud", "not_received", "not_as_described", "duplicate_charge")

CHARGEBACKS = SourceTable(
    name="chargebacks",
    primary_key="chargeback_id",
    event_time="reported_at",
    description="Disputes filed against transactions; they arrive 1 to 45 days late.",
    references=(Reference("transaction_id", "transactions"),),
    columns=(
        Column("chargeback_id", pl.String(), description="Chargeback identifier."),
        Column("transaction_id", pl.String(), description="Disputed transaction."),
        Column("reported_at", TIMESTAMP, description="When the chargeback became known."),
        Column(
            "reason_code",
            pl.String(),
            allowed=REASON_CODES,
            description="Scheme reason code, e.g. fraud.",
        ),
        Column(
            "amount",
            pl.Float64(),
            minimum=MIN_AMOUNT,
            maximum=MAX_AMOUNT,
            description="Disputed amount in EUR.",
        ),
    ),
)
