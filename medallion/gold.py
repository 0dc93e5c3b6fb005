"""Silver to gold: ML-ready labelled transactions.

Each transaction gets the customer profile and merchant that were valid at its event time (an
as-of join, never a later version) and its chargeback label together with the time the label
became known, so later stages can build training sets that only use labels known at a cutoff.
"""

from __future__ import annotations

import polars as pl

GOLD_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "transaction_id": [("transactions", "transaction_id")],
    "event_time": [("transactions", "event_time")],
    "customer_id": [("transactions", "customer_id")],
    "merchant_id": [("transactions", "merchant_id")],
    "amount": [("transactions", "amount")],
    "channel": [("transactions", "channel")],
    "device": [("transactions", "device")],
    "customer_country": [("customers", "country")],
    "customer_segment": [("customers", "segment")],
    "customer_age_band": [("customers", "age_band")],
    "customer_profile_valid_from": [("customers", "updated_at")],
    "merchant_category": [("merchants", "category")],
    "merchant_country": [("merchants", "country")],
    "is_foreign": [("customers", "country"), ("merchants", "country")],
    "is_fraud": [("chargebacks", "reason_code")],
    "chargeback_reason": [("chargebacks", "reason_code")],
    "label_known_at": [("chargebacks", "reported_at")],
}
"""Each gold column and the silver (table, column) pairs it is derived from."""

GOLD_DESCRIPTIONS: dict[str, str] = {
    "transaction_id": "Transaction identifier.",
    "event_time": "Authorisation time (UTC).",
    "customer_id": "Paying customer.",
    "merchant_id": "Receiving merchant.",
    "amount": "Amount in EUR.",
    "channel": "pos, online or contactless.",
    "device": "mobile, desktop or terminal; may be null.",
    "customer_country": "Customer's home country as of the transaction.",
    "customer_segment": "Customer segment as of the transaction.",
    "customer_age_band": "Customer age band as of the transaction.",
    "customer_profile_valid_from": "Since when the profile version used was valid; null when "
    "the customer had no profile yet.",
    "merchant_category": "Merchant category.",
    "merchant_country": "Merchant country.",
    "is_foreign": "Merchant country differs from the customer's home country.",
    "is_fraud": "A fraud chargeback was filed against the transaction (so far).",
    "chargeback_reason": "Reason code of the first chargeback filed, null if none.",
    "label_known_at": "When the first chargeback became known: train only on labels known by "
    "a cutoff.",
}
"""What each gold column means, shown with its lineage in the catalog."""


def _backward(
    sorted_events: pl.LazyFrame,
    versions: pl.LazyFrame,
    *,
    by: str,
    event_time: str,
    valid_from: str,
) -> pl.LazyFrame:
    """Attach to each event, already sorted by ``event_time``, the latest version of its entity
    with ``valid_from <= event_time``; an event before the entity's first version gets nulls."""
    return sorted_events.join_asof(
        versions.sort(valid_from),
        left_on=event_time,
        right_on=valid_from,
        by=by,
        strategy="backward",
        check_sortedness=False,
    )


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
    labels = (
        chargebacks.sort("reported_at", "chargeback_id")
        .group_by("transaction_id")
        .agg(
            pl.col("reason_code").first().alias("chargeback_reason"),
            pl.col("reported_at").first().alias("label_known_at"),
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
    # The two as-of joins on just the columns they need: sorted by event time once
    # and back once, then the matched attributes are put next to the events.
    attributes = (
        events.select("event_time", "customer_id", "merchant_id")
        .with_row_index("_event_order")
        .sort("event_time")
        .pipe(
            _backward,
            profiles,
            by="customer_id",
            event_time="event_time",
            valid_from="customer_profile_valid_from",
        )
        .pipe(
            _backward,
            merchant_versions,
            by="merchant_id",
            event_time="event_time",
            valid_from="created_at",
        )
        .sort("_event_order")
        .drop("_event_order", "event_time", "customer_id", "merchant_id")
    )
    with_merchant = pl.concat([events, attributes], how="horizontal")
    return (
        with_merchant.join(labels, on="transaction_id", how="left", maintain_order="left")
        .with_columns(
            (pl.col("merchant_country") != pl.col("customer_country")).alias("is_foreign"),
            (pl.col("chargeback_reason") == "fraud").fill_null(False).alias("is_fraud"),
        )
        .select(list(GOLD_COLUMNS))
        .collect()
    )
