"""Gold: every transaction with the customer profile and merchant valid at its time, and its label.

Labels arrive late: chargebacks for day D's transactions land on days D+1 .. D+45, so a gold day
reads those days of chargebacks and is rebuilt as they arrive (the nightly relabel schedule).
"""

from collections.abc import Mapping

import polars as pl

from medallion import quality
from medallion.derived import (
    HISTORY,
    Check,
    DerivedColumn,
    DerivedTable,
    Input,
    as_of,
    following,
)
from medallion.quality import CheckOutcome

LABEL_DELAY_DAYS = 45
MIN_PROFILE_MATCH_RATE = 0.99


def label_transactions(
    transactions: pl.LazyFrame,
    customers: pl.LazyFrame,
    merchants: pl.LazyFrame,
    chargebacks: pl.LazyFrame,
) -> pl.DataFrame:
    """Transactions with as-of profile, merchant and the first chargeback filed against them."""
    profiles = customers.select(
        "customer_id",
        pl.col("updated_at").alias("customer_profile_valid_from"),
        pl.col("country").alias("customer_country"),
        pl.col("segment").alias("customer_segment"),
        pl.col("age_band").alias("customer_age_band"),
    )
    merchant_versions = merchants.select(
        "merchant_id",
        "created_at",
        pl.col("category").alias("merchant_category"),
        pl.col("country").alias("merchant_country"),
    )
    fraud = pl.col("reason_code") == "fraud"
    labels = (
        chargebacks.sort("reported_at", "chargeback_id")
        .group_by("transaction_id")
        .agg(
            pl.col("reason_code").first().alias("chargeback_reason"),
            fraud.any().alias("is_fraud"),
            # A fraud label is known from the first fraud chargeback on, even after a dispute.
            pl.coalesce(
                pl.col("reported_at").filter(fraud).first(), pl.col("reported_at").first()
            ).alias("label_known_at"),
        )
    )
    events = (
        transactions.select(
            "transaction_id",
            "event_time",
            "customer_id",
            "merchant_id",
            "amount",
            "channel",
            "device",
        )
        .collect()  # read once: the events and their as-of matches are put side by side below
        .lazy()
    )
    # The two as-of joins on just the columns they need, in event time order, then the matched
    # attributes are put next to the events. Landing files arrive in time order, so the events
    # nearly always are: only otherwise are they sorted by time and back.
    in_time_order = events.select(pl.col("event_time").is_sorted()).collect().item()
    attributes = events.select("event_time", "customer_id", "merchant_id").with_row_index(
        "_event_order"
    )
    attributes = (
        (attributes if in_time_order else attributes.sort("event_time"))
        .pipe(
            as_of,
            profiles,
            by="customer_id",
            event_time="event_time",
            valid_from="customer_profile_valid_from",
        )
        .pipe(
            as_of,
            merchant_versions,
            by="merchant_id",
            event_time="event_time",
            valid_from="created_at",
        )
    )
    if not in_time_order:
        attributes = attributes.sort("_event_order")
    attributes = attributes.drop("_event_order", "event_time", "customer_id", "merchant_id")
    with_merchant = pl.concat([events, attributes], how="horizontal")
    return (
        with_merchant.join(labels, on="transaction_id", how="left", maintain_order="left")
        .with_columns(
            (pl.col("merchant_country") != pl.col("customer_country")).alias("is_foreign"),
            pl.col("is_fraud").fill_null(False),
        )
        .select(list(COLUMNS))
        # polars 2's default streaming engine runs these as-of joins about three times slower.
        .collect(engine="in-memory")
    )


def one_row_per_transaction(gold: pl.DataFrame, inputs: Mapping[str, pl.LazyFrame]) -> CheckOutcome:
    silver_rows = inputs["transactions"].select(pl.len()).collect().item()
    return CheckOutcome(
        gold.height == silver_rows, f"{gold.height} gold rows for {silver_rows} silver"
    )


COLUMNS = {
    "transaction_id": DerivedColumn("Transaction identifier.", ("transactions.transaction_id",)),
    "event_time": DerivedColumn("Authorisation time (UTC).", ("transactions.event_time",)),
    "customer_id": DerivedColumn("Paying customer.", ("transactions.customer_id",)),
    "merchant_id": DerivedColumn("Receiving merchant.", ("transactions.merchant_id",)),
    "amount": DerivedColumn("Amount in EUR.", ("transactions.amount",)),
    "channel": DerivedColumn("pos, online or contactless.", ("transactions.channel",)),
    "device": DerivedColumn("mobile, desktop or terminal; may be null.", ("transactions.device",)),
    "customer_country": DerivedColumn(
        "Customer's home country as of the transaction.", ("customers.country",)
    ),
    "customer_segment": DerivedColumn(
        "Customer segment as of the transaction.", ("customers.segment",)
    ),
    "customer_age_band": DerivedColumn(
        "Customer age band as of the transaction.", ("customers.age_band",)
    ),
    "customer_profile_valid_from": DerivedColumn(
        "Since when the profile version used was valid; null when the customer had no profile yet.",
        ("customers.updated_at",),
    ),
    "merchant_category": DerivedColumn("Merchant category.", ("merchants.category",)),
    "merchant_country": DerivedColumn("Merchant country.", ("merchants.country",)),
    "is_foreign": DerivedColumn(
        "Merchant country differs from the customer's home country.",
        ("customers.country", "merchants.country"),
    ),
    "is_fraud": DerivedColumn(
        "A fraud chargeback was filed against the transaction (so far).",
        ("chargebacks.reason_code",),
    ),
    "chargeback_reason": DerivedColumn(
        "Reason code of the first chargeback filed, null if none.", ("chargebacks.reason_code",)
    ),
    "label_known_at": DerivedColumn(
        "When the label became known: the first fraud chargeback's report time, else the first "
        "chargeback's; train only on labels known by a cutoff.",
        ("chargebacks.reported_at",),
    ),
}

LABELED_TRANSACTIONS = DerivedTable(
    layer="gold",
    name="labeled_transactions",
    description="Transactions with the customer profile and merchant valid at event time and "
    "the chargeback label with the time it became known (label_known_at).",
    inputs={
        "transactions": Input("silver/transactions"),
        "customers": Input("silver/customers", HISTORY),
        "merchants": Input("silver/merchants", HISTORY),
        "chargebacks": Input("silver/chargebacks", following(LABEL_DELAY_DAYS)),
    },
    transform=label_transactions,
    columns=COLUMNS,
    checks=(
        Check("row_count", "One gold row per silver row.", one_row_per_transaction, blocking=True),
        Check(
            "point_in_time",
            "No future profile version and no label known before the transaction.",
            lambda gold, _: quality.point_in_time(gold),
            blocking=True,
        ),
        Check(
            "profile_match_rate",
            f"At least {MIN_PROFILE_MATCH_RATE:.1%} of rows have a profile.",
            lambda gold, _: quality.profile_match_rate(gold, MIN_PROFILE_MATCH_RATE),
        ),
    ),
    metadata=lambda gold: {"fraud_labels": int(gold["is_fraud"].sum())},
)
