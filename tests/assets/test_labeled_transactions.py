"""Gold labelling on hand-built silver rows: as-of profiles and merchants, labels and their time."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from assets.gold.labeled_transactions import label_transactions

T0 = datetime(2024, 3, 1)
GOLD_COLUMNS = [
    "transaction_id",
    "event_time",
    "customer_id",
    "merchant_id",
    "amount",
    "channel",
    "device",
    "customer_country",
    "customer_segment",
    "customer_age_band",
    "customer_profile_valid_from",
    "merchant_category",
    "merchant_country",
    "is_foreign",
    "is_fraud",
    "chargeback_reason",
    "label_known_at",
]


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def transactions(*rows: tuple[str, datetime, str, str]) -> pl.LazyFrame:
    """(transaction_id, event_time, customer_id, merchant_id) rows as silver holds them."""
    ids, times, customers, merchants = zip(*rows, strict=True)
    n = len(rows)
    return pl.LazyFrame(
        {
            "transaction_id": ids,
            "customer_id": customers,
            "merchant_id": merchants,
            "amount": [10.0 + i for i in range(n)],
            "currency": ["EUR"] * n,
            "channel": ["online"] * n,
            "device": pl.Series([None, *["mobile"] * (n - 1)], dtype=pl.String),
            "event_time": pl.Series(times, dtype=pl.Datetime("us")),
            "_source_file": ["t.csv"] * n,
        }
    )


def customers(*rows: tuple[str, datetime, str, str]) -> pl.LazyFrame:
    """(customer_id, updated_at, country, segment) profile versions as silver holds them."""
    ids, updated, countries, segments = zip(*rows, strict=True)
    n = len(rows)
    return pl.LazyFrame(
        {
            "customer_id": ids,
            "email_pseudonym": ["0" * 64] * n,
            "card_number_pseudonym": ["1" * 64] * n,
            "country": countries,
            "segment": segments,
            "age_band": [f"band-{s}" for s in segments],
            "updated_at": pl.Series(updated, dtype=pl.Datetime("us")),
        }
    )


def merchants(*rows: tuple[str, datetime, str, str]) -> pl.LazyFrame:
    """(merchant_id, created_at, category, country) rows as silver holds them."""
    ids, created, categories, countries = zip(*rows, strict=True)
    return pl.LazyFrame(
        {
            "merchant_id": ids,
            "category": categories,
            "country": countries,
            "created_at": pl.Series(created, dtype=pl.Datetime("us")),
        }
    )


def chargebacks(*rows: tuple[str, str, datetime, str]) -> pl.LazyFrame:
    """(chargeback_id, transaction_id, reported_at, reason_code) rows as silver holds them."""
    schema = {
        "chargeback_id": pl.String,
        "transaction_id": pl.String,
        "reported_at": pl.Datetime("us"),
        "reason_code": pl.String,
        "amount": pl.Float64,
    }
    return pl.LazyFrame([(*row, 1.0) for row in rows], schema=schema, orient="row")


ONE_MERCHANT = merchants(("M1", at(-100), "grocery", "DE"))
ONE_CUSTOMER = customers(("C1", at(-100), "DE", "retail"))
NO_CHARGEBACKS = chargebacks()


def by_id(gold: pl.DataFrame, *columns: str) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in gold.select("transaction_id", *columns).iter_rows()}


def test_one_gold_row_per_transaction_in_transaction_order() -> None:
    txns = transactions(
        ("T3", at(5), "C1", "M1"),
        ("T1", at(1), "C2", "M1"),
        ("T2", at(3), "C1", "M1"),
    )
    # Re-sent rows on later silver days (the same profile version, the same merchant) and a
    # chargeback of a transaction outside this day must not add or drop rows.
    profiles = customers(
        ("C1", at(0), "DE", "retail"),
        ("C1", at(0), "DE", "retail"),
        ("C2", at(0), "FR", "premium"),
    )
    shops = merchants(("M1", at(-1), "fuel", "DE"), ("M1", at(-1), "fuel", "DE"))
    labels = chargebacks(
        ("CB1", "T2", at(30), "fraud"),
        ("CB2", "T2", at(40), "not_received"),
        ("CB3", "T9", at(30), "fraud"),
    )

    gold = label_transactions(txns, profiles, shops, labels)

    assert gold.columns == GOLD_COLUMNS
    assert gold["transaction_id"].to_list() == ["T3", "T1", "T2"]
    assert gold.select("event_time", "customer_id", "merchant_id", "amount", "device").equals(
        txns.select("event_time", "customer_id", "merchant_id", "amount", "device").collect()
    )


def test_profile_is_the_latest_version_valid_at_the_event_never_a_later_one() -> None:
    profiles = customers(
        ("C1", at(5), "FR", "premium"),  # versions arrive in any order
        ("C1", at(1), "DE", "retail"),
        ("C1", at(10), "NL", "business"),
        ("C2", at(0), "IT", "retail"),  # another customer's earlier profile never leaks across
    )
    txns = transactions(
        ("before_first", at(0.5), "C1", "M1"),
        ("at_first", at(1), "C1", "M1"),
        ("between", at(4), "C1", "M1"),
        ("at_second", at(5), "C1", "M1"),
        ("just_before_third", at(10) - timedelta(microseconds=1), "C1", "M1"),
        ("after_last", at(20), "C1", "M1"),
        ("other", at(0.5), "C2", "M1"),
        ("unknown", at(20), "C3", "M1"),
    )

    gold = label_transactions(txns, profiles, ONE_MERCHANT, NO_CHARGEBACKS)

    columns = ("customer_country", "customer_segment", "customer_profile_valid_from")
    assert by_id(gold, *columns) == {
        "before_first": (None, None, None),
        "at_first": ("DE", "retail", at(1)),
        "between": ("DE", "retail", at(1)),
        "at_second": ("FR", "premium", at(5)),
        "just_before_third": ("FR", "premium", at(5)),
        "after_last": ("NL", "business", at(10)),
        "other": ("IT", "retail", at(0)),
        "unknown": (None, None, None),
    }
    assert gold.filter(pl.col("transaction_id") == "at_second")["customer_age_band"].item() == (
        "band-premium"
    )
    assert (gold["customer_profile_valid_from"] <= gold["event_time"]).all()


def test_merchant_attributes_and_is_foreign() -> None:
    shops = merchants(
        ("M_DE", at(0), "grocery", "DE"),
        ("M_US", at(0), "travel", "US"),
        ("M_NEW", at(50), "gaming", "DE"),
    )
    txns = transactions(
        ("home", at(1), "C1", "M_DE"),
        ("abroad", at(1), "C1", "M_US"),
        ("no_profile", at(1), "C9", "M_US"),
        ("before_onboarding", at(1), "C1", "M_NEW"),
    )

    gold = label_transactions(txns, ONE_CUSTOMER, shops, NO_CHARGEBACKS)

    assert by_id(gold, "merchant_category", "merchant_country", "is_foreign") == {
        "home": ("grocery", "DE", False),
        "abroad": ("travel", "US", True),
        # Without a profile nobody knows whether the payment was foreign.
        "no_profile": ("travel", "US", None),
        # A merchant version from after the payment is never used.
        "before_onboarding": (None, None, None),
    }


def test_a_fraud_chargeback_labels_the_transaction_when_it_became_known() -> None:
    txns = transactions(
        ("fraud", at(1), "C1", "M1"),
        ("dispute", at(1), "C1", "M1"),
        ("clean", at(1), "C1", "M1"),
    )
    labels = chargebacks(
        ("CB1", "fraud", at(30), "fraud"),
        ("CB2", "dispute", at(50), "not_received"),
    )

    gold = label_transactions(txns, ONE_CUSTOMER, ONE_MERCHANT, labels)

    assert by_id(gold, "is_fraud", "chargeback_reason", "label_known_at") == {
        "fraud": (True, "fraud", at(30)),
        "dispute": (False, "not_received", at(50)),
        "clean": (False, None, None),  # not fraud, and never null
    }
    assert gold["is_fraud"].dtype == pl.Boolean


def test_the_first_chargeback_filed_gives_reason_and_time() -> None:
    txns = transactions(("late_dispute", at(1), "C1", "M1"), ("tie", at(1), "C1", "M1"))
    labels = chargebacks(  # in no particular order
        ("CB7", "late_dispute", at(60), "duplicate_charge"),
        ("CB5", "late_dispute", at(20), "fraud"),
        ("CB9", "tie", at(30), "not_as_described"),
        ("CB8", "tie", at(30), "fraud"),  # same report time: the lower chargeback id is first
    )

    gold = label_transactions(txns, ONE_CUSTOMER, ONE_MERCHANT, labels)

    assert by_id(gold, "is_fraud", "chargeback_reason", "label_known_at") == {
        "late_dispute": (True, "fraud", at(20)),
        "tie": (True, "fraud", at(30)),
    }


def test_a_fraud_chargeback_after_another_dispute_still_labels_fraud() -> None:
    """is_fraud: "A fraud chargeback was filed against the transaction (so far)"."""
    txns = transactions(("T1", at(1), "C1", "M1"))
    labels = chargebacks(
        ("CB1", "T1", at(10), "not_received"),
        ("CB2", "T1", at(20), "fraud"),
    )

    gold = label_transactions(txns, ONE_CUSTOMER, ONE_MERCHANT, labels)

    assert gold["chargeback_reason"].to_list() == ["not_received"]
    assert gold["is_fraud"].to_list() == [True]


def test_no_chargebacks_and_no_profiles_at_all() -> None:
    txns = transactions(("T1", at(1), "C1", "M1"), ("T2", at(2), "C2", "M1"))
    empty_profiles = customers(("C0", at(0), "DE", "retail")).clear()

    gold = label_transactions(txns, empty_profiles, ONE_MERCHANT, NO_CHARGEBACKS)

    assert gold.height == 2
    assert gold["customer_profile_valid_from"].null_count() == 2
    assert gold["is_fraud"].to_list() == [False, False]
    assert gold["label_known_at"].null_count() == 2
