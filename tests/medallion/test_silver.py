"""Silver's plain functions on hand-written rows: each rule, and pseudonyms that hold."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from assets.sources._domains import COUNTRIES
from assets.sources.chargebacks import CHARGEBACKS
from assets.sources.customers import CUSTOMERS
from assets.sources.transactions import TRANSACTIONS
from medallion.pseudonymize import keyed_hash
from medallion.silver import KnownIds, SilverResult, to_silver
from medallion.sources import SourceTable

KEY = b"unit-key"
DAY = date(2024, 1, 1)


def known(*accepted: str, quarantined: tuple[str, ...] = ()) -> KnownIds:
    return KnownIds(pl.Series(accepted, dtype=pl.String), pl.Series(quarantined, dtype=pl.String))


EVERYONE = {"customer_id": known("C1", "C2"), "merchant_id": known("M1")}


def clean(frame: pl.DataFrame, spec: SourceTable, **kwargs: object) -> SilverResult:
    """``to_silver`` for the day every hand-written row belongs to, references all known."""
    kwargs.setdefault("known", EVERYONE if spec is TRANSACTIONS else {})
    return to_silver(frame, spec, KEY, day=DAY, **kwargs)


def reasons_by_id(result: SilverResult, column: str = "transaction_id") -> dict[str, list[str]]:
    return dict(
        zip(
            result.quarantine["original"].str.json_path_match(f"$.{column}").fill_null("-"),
            result.quarantine["failed_checks"].to_list(),
            strict=True,
        )
    )


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
    result = clean(bronze(rows), TRANSACTIONS)
    assert reasons_by_id(result) == {
        "T2": ["amount: greater_than_or_equal_to(0.01)"],
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
    result = clean(bronze([profile_row, bad]), CUSTOMERS)
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
    result = clean(bronze([first, second, second]), CUSTOMERS)
    assert result.silver["segment"].to_list() == ["retail", "premium"]
    assert result.duplicates_removed == 1


@pytest.mark.parametrize(
    ("event_time", "amount", "reason"),
    [
        ("1900-01-01T10:00:00", "12.50", "event_time: outside its landing day (tolerance 0:00:00)"),
        ("2200-01-01T10:00:00", "12.50", "event_time: outside its landing day (tolerance 0:00:00)"),
        (
            "2023-12-31T23:59:59.999999",
            "12.50",
            "event_time: outside its landing day (tolerance 0:00:00)",
        ),
        ("2024-01-02T00:00:00", "12.50", "event_time: outside its landing day (tolerance 0:00:00)"),
        ("2024-01-01T10:00:00", "1e-320", "amount: greater_than_or_equal_to(0.01)"),
    ],
)
def test_implausible_values_are_quarantined_with_a_reason(
    event_time: str, amount: str, reason: str
) -> None:
    rows = [transaction(), transaction(transaction_id="T2", event_time=event_time, amount=amount)]
    result = clean(bronze(rows), TRANSACTIONS)
    assert result.silver["transaction_id"].to_list() == ["T1"]
    assert reasons_by_id(result) == {"T2": [reason]}


def test_day_edges_and_a_cent_are_plausible() -> None:
    rows = [
        transaction(event_time="2024-01-01T00:00:00"),
        transaction(transaction_id="T2", event_time="2024-01-01T23:59:59.999999", amount="0.01"),
    ]
    result = clean(bronze(rows), TRANSACTIONS)
    assert result.quarantine.is_empty()
    assert result.silver.height == 2


def test_conflicting_duplicates_are_quarantined_identical_ones_counted() -> None:
    rows = [
        transaction(),
        transaction(amount="99.00", channel="pos"),
        transaction(transaction_id="T2"),
        transaction(transaction_id="T2"),
    ]
    result = clean(bronze(rows), TRANSACTIONS)
    assert result.quarantine["key"].to_list() == ["T1", "T1"]
    assert (
        result.quarantine["failed_checks"].to_list()
        == [["transaction_id: conflicting duplicate"]] * 2
    )
    assert result.silver["transaction_id"].to_list() == ["T2"]
    assert result.duplicates_removed == 1
    assert result.silver.height + result.quarantine.height + result.duplicates_removed == 4


def chargeback(**overrides: str | None) -> dict[str, str | None]:
    row = {
        "chargeback_id": "CB1",
        "transaction_id": "T1",
        "reported_at": "2024-01-01T12:00:00",
        "reason_code": "fraud",
        "amount": "12.50",
    }
    return row | overrides


def test_a_reference_to_a_quarantined_entity_is_kept_an_orphan_quarantined() -> None:
    rows = [
        chargeback(),
        chargeback(chargeback_id="CB2", transaction_id="T_QUARANTINED"),
        chargeback(chargeback_id="CB3", transaction_id="T_NEVER_ARRIVED"),
    ]
    ids = {"transaction_id": known("T1", quarantined=("T_QUARANTINED",))}
    result = clean(bronze(rows), CHARGEBACKS, known=ids)
    assert result.silver["chargeback_id"].to_list() == ["CB1", "CB2"]
    assert reasons_by_id(result, "chargeback_id") == {
        "CB3": ["transaction_id: references no known transactions"]
    }
    assert result.quarantined_references == {"transaction_id": 1}


def test_references_cannot_be_skipped() -> None:
    with pytest.raises(ValueError, match="no known ids given for reference 'transaction_id'"):
        clean(bronze([chargeback()]), CHARGEBACKS)


def test_renamed_pii_is_pseudonymized_in_the_quarantine() -> None:
    renamed = bronze([profile()]).rename({"email": "e_mail"})
    result = clean(renamed, CUSTOMERS)
    assert result.silver.is_empty()
    original = result.quarantine["original"][0]
    assert "Lovelace" not in original and "4111111111111111" not in original
    assert keyed_hash(pl.Series(["ada.lovelace@example.com"]), KEY)[0] in original
    assert result.quarantine["failed_checks"][0].to_list() == ["email: not_nullable"]


def test_unreadable_records_are_quarantined_with_the_error() -> None:
    good = bronze([profile()])
    broken = good.with_columns(pl.lit(None, pl.String).alias(c) for c in profile()).with_columns(
        pl.lit(1, pl.Int64).alias("_row_number"),
        pl.lit("f.csv line 3: 7 fields, header has 8").alias("_error"),
        pl.lit('C9,"ada@example.com",x').alias("_raw"),
    )
    invalid = bronze([profile(customer_id="C3", country="Atlantis")]).with_columns(
        pl.lit(2, pl.Int64).alias("_row_number")
    )
    frame = pl.concat(
        [good.with_columns(pl.lit(None, pl.String).alias("_error")), broken, invalid],
        how="diagonal_relaxed",
    )
    result = clean(frame, CUSTOMERS)
    # The contract failure after the unreadable record is pinned on its own row.
    assert reasons_by_id(result, "customer_id") == {
        "-": ["record: unreadable"],
        "C3": [f"country: isin({COUNTRIES})"],
    }
    assert result.silver["customer_id"].to_list() == ["C1"]
    row = result.quarantine.row(0, named=True)
    assert row["failed_checks"] == ["record: unreadable"]
    assert row["error"] == "f.csv line 3: 7 fields, header has 8"
    assert "ada@example.com" not in row["original"]
    assert result.bronze_rows == 3
