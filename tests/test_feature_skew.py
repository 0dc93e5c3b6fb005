"""No training-serving skew: the online vector equals the offline point-in-time vector."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from assets.features.customer_activity import AMOUNT_TO_MEAN_30D
from feature_store.offline import get_historical_features
from feature_store.online import open_online_store
from feature_store.serving import get_online_features, with_request_features
from feature_store.views import EVENT_TIMESTAMP
from registry import discover
from tests.conftest import SMALL, Pipeline

REGISTRY = discover()

FEATURES = [
    f"{view.name}:{feature.name}" for view in REGISTRY.views.values() for feature in view.features
]


def test_online_vector_equals_offline_vector_at_the_same_time(pipeline: Pipeline) -> None:
    as_of = pipeline.days_end()
    transactions = pipeline.table("silver/transactions")
    sample = transactions.sample(n=80, seed=3).select("customer_id", "merchant_id", "amount")
    unknown = pl.DataFrame(
        {"customer_id": ["C9999999"], "merchant_id": ["M99999"], "amount": [1.0]}
    )
    entity_rows = pl.concat([sample, unknown])

    offline = with_request_features(
        get_historical_features(
            entity_rows.with_columns(pl.lit(as_of).alias(EVENT_TIMESTAMP)),
            FEATURES,
            views=REGISTRY.views,
            scan=pipeline.lakehouse.scan,
        ),
        [AMOUNT_TO_MEAN_30D],
    ).drop(EVENT_TIMESTAMP)
    with open_online_store(pipeline.settings.online_store_url) as store:
        online = get_online_features(
            store,
            entity_rows,
            FEATURES,
            views=REGISTRY.views,
            as_of=as_of,
            request_features=[AMOUNT_TO_MEAN_30D],
        )

    assert online.columns == offline.columns
    assert online.equals(offline)
    assert offline["txn_count_7d"].drop_nulls().len() >= 70
    assert offline["chargeback_rate_30d"].drop_nulls().len() >= 70
    assert offline.row(-1)[3:] == (None,) * (offline.width - 3)


def test_ttl_expires_online_values_like_offline(pipeline: Pipeline) -> None:
    later = pipeline.days_end() + timedelta(days=3)
    merchants = pipeline.table("silver/merchants").select("merchant_id").head(20)
    with open_online_store(pipeline.settings.online_store_url) as store:
        online = get_online_features(
            store, merchants, ["merchant_risk:transactions_30d"], views=REGISTRY.views, as_of=later
        )
    offline = get_historical_features(
        merchants.with_columns(pl.lit(later).alias(EVENT_TIMESTAMP)),
        ["merchant_risk:transactions_30d"],
        views=REGISTRY.views,
        scan=pipeline.lakehouse.scan,
    ).drop(EVENT_TIMESTAMP)
    assert online.equals(offline)
    assert online["transactions_30d"].null_count() == online.height
    assert SMALL.days > 1
