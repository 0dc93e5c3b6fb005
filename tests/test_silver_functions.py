"""Silver's plain functions on hand-written rows: each rule, and pseudonyms that hold."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from medallion.pseudonymize import keyed_hash
from medallion.silver import to_silver
from medallion.tables import CUSTOMERS, TRANSACTIONS

KEY = b"unit-key"


def bronze(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))
    return frame.with_columns(
        pl.lit("f.csv").alias("_source_file"),
        pl.lit("csv").alias("_source_format"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_row_number"),
        pl.lit(datetime(2024, 1, 1, tzinfo=UTC)).alias("_ingested_at"),
        pl.lit("run").alias("_run_id"),
    )


def transaction(**overrides: str | None) -> dict[str, str | None]:
    row = {
        "transaction_id": "T1",
        "customer_id": "C1",
        "merchant_id": "M1",
        "amount": "12.50",
        "currency": "EUR",
        "channel": "online",
        "device": "mobile",
        "event_time": "2024-01-01T10:00:00.000000",
    }
    return row | overrides


def test_each_rule_quarantines_with_its_name() -> None:
    rows = [
        transaction(),
        transaction(transaction_id="T2", amount="-3"),
        transaction(transaction_id="T3", amount="1e9"),
        transaction(transaction_id="T4", event_time="2024-02-30T25:61:00"),
        transaction(transaction_id=None),
        transaction(transaction_id="T6", channel="telepathy"),
        transaction(transaction_id="T7", amount="twelve"),
        transaction(),
    ]
    result = to_silver(bronze(rows), TRANSACTIONS, KEY)
    reasons = dict(
        zip(
            result.quarantine["original"].str.json_path_match("$.transaction_id").fill_null("-"),
            result.quarantine["failed_checks"].to_list(),
            strict=True,
        )
    )
    assert reasons == {
        "T2": ["amount: greater_than(0)"],
        "T3": ["amount: less_than_or_equal_to(50000.0)"],
        "T4": ["event_time: unparseable"],
        "-": ["transaction_id: not_nullable"],
        "T6": ["channel: isin(('pos', 'contactless', 'online'))"],
        "T7": ["amount: unparseable"],
    }
    assert result.silver["transaction_id"].to_list() == ["T1"]
    assert result.duplicates_removed == 1
    assert result.bronze_rows == 8
    assert result.silver["amount"].to_list() == [12.5]
    assert result.silver["event_time"].to_list() == [datetime(2024, 1, 1, 10)]


def profile(**overrides: str | None) -> dict[str, str | None]:
    row = {
        "customer_id": "C1",
        "email": "Ada.Lovelace@Example.com",
        "card_number": "4111111111111111",
        "country": "DE",
        "segment": "retail",
        "age_band": "26-35",
        "updated_at": "2024-01-01T00:00:00",
    }
    return row | overrides


def test_pii_becomes_keyed_pseudonyms_everywhere() -> None:
    profile_row = profile()
    bad = profile(customer_id="C2", country="Atlantis")
    result = to_silver(bronze([profile_row, bad]), CUSTOMERS, KEY)
    assert "email" not in result.silver.columns
    assert "card_number" not in result.silver.columns
    pseudonym = result.silver["email_pseudonym"][0]
    assert pseudonym == keyed_hash(pl.Series(["ada.lovelace@example.com "]), KEY)[0]
    assert pseudonym != keyed_hash(pl.Series(["ada.lovelace@example.com"]), b"other-key")[0]
    original = result.quarantine["original"][0]
    assert "Lovelace" not in original and "4111111111111111" not in original
    assert pseudonym in original


def test_versioned_profiles_keep_every_version() -> None:
    first = profile()
    second = profile(segment="premium", updated_at="2024-01-01T12:00:00")
    result = to_silver(bronze([first, second, second]), CUSTOMERS, KEY)
    assert result.silver["segment"].to_list() == ["retail", "premium"]
    assert result.duplicates_removed == 1
