"""Online retrieval through a real SQLite store: newest values, ttl, request features, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from feature_store.online import OnlineStore, open_online_store
from feature_store.serving import get_online_features
from feature_store.views import EVENT_TIMESTAMP, Entity, Feature, FeatureView, RequestFeature

T0 = datetime(2024, 3, 1, 12)
TTL = timedelta(days=2)
CUSTOMER = Entity(name="customer", join_key="customer_id")
MERCHANT = Entity(name="merchant", join_key="merchant_id")


def view(
    name: str, entity: Entity, features: dict[str, pl.DataType], ttl: timedelta
) -> FeatureView:
    return FeatureView(
        name=name,
        entity=entity,
        source=("gold", "test"),
        transform=lambda frame, window: frame,
        features=tuple(Feature(n, dtype, f"{n} for the test") for n, dtype in features.items()),
        ttl=ttl,
        owner="team:test",
        freshness_sla=timedelta(days=1),
        description="A view declared for the test.",
    )


SPEND = view("spend", CUSTOMER, {"spend_7d": pl.Float64(), "txn_7d": pl.Int64()}, TTL)
RISK = view("risk", MERCHANT, {"fraud_rate": pl.Float64()}, timedelta(0))  # never expires
VIEWS = {v.name: v for v in (SPEND, RISK)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OnlineStore]:
    with open_online_store(f"sqlite:///{tmp_path}/online.db") as opened:
        yield opened


def write_spend(store: OnlineStore, *rows: tuple[str, datetime, float, int]) -> None:
    frame = pl.DataFrame(
        rows,
        schema={
            "customer_id": pl.String,
            EVENT_TIMESTAMP: pl.Datetime("us"),
            "spend_7d": pl.Float64,
            "txn_7d": pl.Int64,
        },
        orient="row",
    )
    store.write("spend", frame, entity_key="customer_id", timestamp=EVENT_TIMESTAMP)


def write_risk(store: OnlineStore, *rows: tuple[str, datetime, float]) -> None:
    frame = pl.DataFrame(
        rows,
        schema={
            "merchant_id": pl.String,
            EVENT_TIMESTAMP: pl.Datetime("us"),
            "fraud_rate": pl.Float64,
        },
        orient="row",
    )
    store.write("risk", frame, entity_key="merchant_id", timestamp=EVENT_TIMESTAMP)


def customers(*ids: str | None) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": list(ids)}, schema={"customer_id": pl.String})


def spend_at(store: OnlineStore, as_of: datetime, *ids: str | None) -> list[float | None]:
    served = get_online_features(
        store, customers(*ids), ["spend:spend_7d"], views=VIEWS, as_of=as_of
    )
    return served["spend_7d"].to_list()


def test_each_entity_gets_its_newest_written_values(store: OnlineStore) -> None:
    write_spend(store, ("c1", T0, 10.0, 1), ("c2", T0, 5.0, 2))
    write_spend(store, ("c1", T0 + timedelta(hours=1), 20.0, 3))
    write_spend(store, ("c1", T0 - timedelta(hours=1), 99.0, 9))  # a late, older row
    rows = pl.DataFrame({"customer_id": ["c2", "c1", "c1"], "amount": [1.0, 2.0, 3.0]})

    served = get_online_features(
        store, rows, ["spend:txn_7d", "spend:spend_7d"], views=VIEWS, as_of=T0 + timedelta(hours=2)
    )

    assert served.columns == ["customer_id", "amount", "txn_7d", "spend_7d"]
    assert served.schema["txn_7d"] == pl.Int64
    assert served.schema["spend_7d"] == pl.Float64
    assert served.rows() == [("c2", 1.0, 2, 5.0), ("c1", 2.0, 3, 20.0), ("c1", 3.0, 3, 20.0)]


def test_unknown_and_null_entities_get_nulls_and_keep_their_rows(store: OnlineStore) -> None:
    write_spend(store, ("c1", T0, 10.0, 1))
    assert spend_at(store, T0, "nobody") == [None]
    assert spend_at(store, T0, "nobody", None, "c1") == [None, None, 10.0]


def test_values_older_than_the_ttl_or_newer_than_as_of_are_not_served(
    store: OnlineStore,
) -> None:
    write_spend(store, ("c1", T0, 10.0, 1))
    tick = timedelta(microseconds=1)
    assert spend_at(store, T0 - tick, "c1") == [None]  # written after as_of
    assert spend_at(store, T0, "c1") == [10.0]
    assert spend_at(store, T0 + TTL, "c1") == [10.0]  # the ttl bound is inclusive
    assert spend_at(store, T0 + TTL + tick, "c1") == [None]


def test_a_view_without_ttl_never_expires(store: OnlineStore) -> None:
    write_risk(store, ("m1", T0, 0.25))
    merchants = pl.DataFrame({"merchant_id": ["m1"]})
    years_later = T0 + timedelta(days=3650)
    served = get_online_features(
        store, merchants, ["risk:fraud_rate"], views=VIEWS, as_of=years_later
    )
    assert served["fraud_rate"].to_list() == [0.25]


def test_each_view_is_read_by_its_own_entity_key(store: OnlineStore) -> None:
    write_spend(store, ("k", T0, 10.0, 1))
    write_risk(store, ("k", T0, 0.5), ("m1", T0, 0.25))
    rows = pl.DataFrame({"customer_id": ["k", "k"], "merchant_id": ["m1", "nobody"]})
    served = get_online_features(
        store, rows, ["risk:fraud_rate", "spend:spend_7d"], views=VIEWS, as_of=T0
    )
    assert served.select("fraud_rate", "spend_7d").rows() == [(0.25, 10.0), (None, 10.0)]


def test_integer_entity_keys_are_served(store: OnlineStore) -> None:
    frame = pl.DataFrame({"customer_id": [7, 8], EVENT_TIMESTAMP: [T0, T0], "spend_7d": [1.5, 2.5]})
    store.write("spend", frame, entity_key="customer_id", timestamp=EVENT_TIMESTAMP)
    rows = pl.DataFrame({"customer_id": [8, 9]})
    served = get_online_features(store, rows, ["spend:spend_7d"], views=VIEWS, as_of=T0)
    assert served.rows() == [(8, 2.5), (9, None)]


AMOUNT_TO_SPEND = RequestFeature(
    name="amount_to_spend",
    dtype=pl.Float64(),
    description="The payment's amount relative to the customer's recent spend.",
    request_fields={"amount": pl.Float64()},
    inputs=("spend:spend_7d",),
    expression=pl.col("amount") / pl.col("spend_7d"),
)
IS_LARGE = RequestFeature(
    name="is_large",
    dtype=pl.Boolean(),
    description="A payment over 100.",
    request_fields={"amount": pl.Float64()},
    inputs=(),
    expression=pl.col("amount") > 100,
)


def test_request_features_are_computed_from_request_fields_and_served_values(
    store: OnlineStore,
) -> None:
    write_spend(store, ("c1", T0, 50.0, 1), ("c_old", T0 - TTL - timedelta(days=1), 50.0, 1))
    rows = pl.DataFrame({"customer_id": ["c1", "c1", "c_old"], "amount": [25.0, 150.0, 25.0]})

    served = get_online_features(
        store,
        rows,
        ["spend:spend_7d"],
        views=VIEWS,
        as_of=T0,
        request_features=[AMOUNT_TO_SPEND, IS_LARGE],
    )

    assert served.columns == ["customer_id", "amount", "spend_7d", "amount_to_spend", "is_large"]
    assert served["amount_to_spend"].to_list() == [0.5, 3.0, None]  # expired input: null
    assert served["is_large"].to_list() == [False, True, False]
    assert served.schema["is_large"] == pl.Boolean


def test_bad_feature_references_fail_clearly(store: OnlineStore) -> None:
    write_spend(store, ("c1", T0, 10.0, 1))
    rows = customers("c1")
    with pytest.raises(KeyError, match="unknown feature view 'nope'"):
        get_online_features(store, rows, ["nope:spend_7d"], views=VIEWS, as_of=T0)
    with pytest.raises(KeyError, match="feature view 'spend' has no feature 'nope'"):
        get_online_features(store, rows, ["spend:nope"], views=VIEWS, as_of=T0)
    with pytest.raises(ValueError, match="not of the form 'view:feature'"):
        get_online_features(store, rows, ["spend_7d"], views=VIEWS, as_of=T0)


def test_a_declared_view_never_written_online_fails_by_name(store: OnlineStore) -> None:
    merchants = pl.DataFrame({"merchant_id": ["m1"]})
    with pytest.raises(ValueError, match="unknown feature view 'risk'"):
        get_online_features(store, merchants, ["risk:fraud_rate"], views=VIEWS, as_of=T0)


def test_the_same_feature_name_from_two_views_is_not_silently_overwritten(
    store: OnlineStore,
) -> None:
    twin = view("spend_v2", CUSTOMER, {"spend_7d": pl.Float64()}, TTL)
    write_spend(store, ("c1", T0, 10.0, 1))
    frame = pl.DataFrame({"customer_id": ["c1"], EVENT_TIMESTAMP: [T0], "spend_7d": [99.0]})
    store.write("spend_v2", frame, entity_key="customer_id", timestamp=EVENT_TIMESTAMP)
    with pytest.raises((ValueError, pl.exceptions.DuplicateError), match="spend_7d"):
        get_online_features(
            store,
            customers("c1"),
            ["spend:spend_7d", "spend_v2:spend_7d"],
            views={**VIEWS, "spend_v2": twin},
            as_of=T0,
        )
