"""The request path without HTTP: features from a real SQLite online store, real saved models,
routing between them, and the rows the prediction log receives."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from assets.deployments.fraud_api import FRAUD_API
from assets.models.fraud_scorer import FRAUD_SCORER
from assets.training.fraud import FRAUD
from feature_store.online import SQLiteOnlineStore
from feature_store.views import EVENT_TIMESTAMP
from registry import discover
from serving.bundle import ServedModel
from serving.edge import load_scorer
from serving.prediction_log import PredictionLog
from serving.requests import request_model, to_frame
from serving.routing import Traffic, arm_for
from serving.scoring import Scoring
from training.data import Columns, Encoding
from training.module import FraudNet
from training.trainer import save

REGISTRY = discover()
SOURCE = REGISTRY.sources["transactions"]
STORED_AT = datetime(2024, 5, 14, 12)
NOW = STORED_AT + timedelta(hours=6)
CUSTOMERS = [f"C{i:04d}" for i in range(200)]


def saved_model(directory: Path, seed: int, columns: Columns = FRAUD_SCORER.columns) -> Path:
    """A fraud network with seeded random weights over the declared columns."""
    encoding = Encoding(
        vocabularies={name: ["DE", "FR", "online", "pos"] for name in columns.categorical},
        means=dict.fromkeys(columns.numeric, 1.0),
        scales=dict.fromkeys(columns.numeric, 2.0),
    )
    torch.manual_seed(seed)
    params = FRAUD_SCORER.hyperparameters
    network = FraudNet(
        encoding.cardinalities(columns), len(columns.numeric), 4, (16,), params.dropout
    )
    save(directory, network, columns, encoding, replace(params, embedding_dim=4, hidden=(16,)))
    return directory


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SQLiteOnlineStore:
    """Every view the training set reads, one row per known customer and merchant."""
    store = SQLiteOnlineStore(str(tmp_path_factory.mktemp("online") / "online.db"))
    values = {pl.String: "DE", pl.Int64: 3, pl.Float64: 40.0}
    for view in REGISTRY.views.values():
        key = view.entity.join_key
        ids = CUSTOMERS if key == "customer_id" else ["M1"]
        rows = pl.DataFrame(
            {
                key: ids,
                EVENT_TIMESTAMP: [STORED_AT] * len(ids),
                **{f.name: [values[type(f.dtype)]] * len(ids) for f in view.features},
            },
            schema_overrides={f.name: f.dtype for f in view.features},
        )
        store.write(view.name, rows, entity_key=key, timestamp=EVENT_TIMESTAMP)
    return store


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ServedModel]:
    root = tmp_path_factory.mktemp("models")
    return {
        "champion": ServedModel("1", 0.5, load_scorer(saved_model(root / "1", 1), "torch")),
        "challenger": ServedModel("2", 0.3, load_scorer(saved_model(root / "2", 2), "torch")),
    }


def requests(customers: list[str]) -> pl.DataFrame:
    model = request_model(SOURCE, FRAUD_API.request_fields)
    rows = [
        model.model_validate(
            {
                "transaction_id": f"T{i}",
                "customer_id": customer,
                "merchant_id": "M1",
                "amount": 10.0 + i,
                "channel": "online",
                "event_time": NOW.isoformat() + "Z",
            }
        )
        for i, customer in enumerate(customers)
    ]
    return to_frame(rows, SOURCE)


def scoring(models: dict[str, ServedModel], traffic: Traffic, share: float = 0.0) -> Scoring:
    return Scoring(
        replace(FRAUD_API, traffic=traffic),
        FRAUD,
        SOURCE,
        REGISTRY.views,
        REGISTRY.request_features,
        models,
        share=share,
    )


def test_champion_alone_answers_and_logs_every_request(
    store: SQLiteOnlineStore, models: dict[str, ServedModel]
) -> None:
    scored = scoring({"champion": models["champion"]}, Traffic("shadow")).score(
        requests(CUSTOMERS[:5]), store
    )
    assert [a["transaction_id"] for a in scored.answers] == [f"T{i}" for i in range(5)]
    assert {a["arm"] for a in scored.answers} == {"champion"}
    assert scored.log.height == 5 and scored.log["served"].all()
    assert scored.log["txn_count_24h"].to_list() == [3] * 5
    assert not scored.log["is_foreign"].any()


def test_shadow_scores_the_challenger_but_never_answers_with_it(
    store: SQLiteOnlineStore, models: dict[str, ServedModel]
) -> None:
    batch = requests(CUSTOMERS[:20])
    alone = scoring({"champion": models["champion"]}, Traffic("champion")).score(batch, store)
    shadowed = scoring(models, Traffic("shadow")).score(batch, store)
    assert [a["probability"] for a in shadowed.answers] == [a["probability"] for a in alone.answers]
    assert {a["arm"] for a in shadowed.answers} == {"champion"}
    challenger = shadowed.log.filter(pl.col("arm") == "challenger")
    assert challenger.height == 20 and not challenger["served"].any()
    assert (challenger["model_version"] == "2").all()


def test_an_ab_split_routes_each_customer_by_its_hash(
    store: SQLiteOnlineStore, models: dict[str, ServedModel]
) -> None:
    batch = requests(CUSTOMERS)
    scored = scoring(models, Traffic("ab", challenger_share=0.5)).score(batch, store)
    expected = [arm_for(c, 0.5) for c in CUSTOMERS]
    assert [a["arm"] for a in scored.answers] == expected
    assert 0.35 < expected.count("challenger") / len(expected) < 0.65
    for arm, model in models.items():
        rows = [i for i, a in enumerate(expected) if a == arm]
        direct = model.scorer.score(scored.log.filter(pl.col("arm") == arm))
        served = np.array([scored.answers[i]["probability"] for i in rows], dtype=np.float32)
        assert served == pytest.approx(direct, abs=1e-6)
        assert all(
            scored.answers[i]["fraud"] == (served[j] >= model.threshold) for j, i in enumerate(rows)
        )


def test_a_failing_challenger_hands_its_customers_to_the_champion(
    store: SQLiteOnlineStore, models: dict[str, ServedModel], tmp_path: Path
) -> None:
    # A challenger reading a feature the service does not compute fails on every row.
    columns = replace(FRAUD_SCORER.columns, numeric=(*FRAUD_SCORER.columns.numeric, "not_served"))
    broken = ServedModel("3", 0.5, load_scorer(saved_model(tmp_path, 3, columns), "torch"))
    batch = requests(CUSTOMERS[:50])
    scored = scoring(
        {"champion": models["champion"], "challenger": broken}, Traffic("canary"), share=1.0
    ).score(batch, store)
    alone = scoring({"champion": models["champion"]}, Traffic("champion")).score(batch, store)
    assert {a["arm"] for a in scored.answers} == {"champion"}
    assert [a["probability"] for a in scored.answers] == [a["probability"] for a in alone.answers]
    [failed] = [o for o in scored.outcomes if o.arm == "challenger"]
    assert failed.errors == 50


def test_an_unknown_customer_reads_null_features_and_is_scored(
    store: SQLiteOnlineStore, models: dict[str, ServedModel]
) -> None:
    scored = scoring(models, Traffic("champion")).score(requests(["nobody"]), store)
    [row] = scored.log.to_dicts()
    assert row["txn_count_24h"] is None and row["customer_country"] is None
    assert 0.0 <= scored.answers[0]["probability"] <= 1.0


def test_log_rows_fit_the_prediction_log(
    store: SQLiteOnlineStore, models: dict[str, ServedModel], tmp_path: Path
) -> None:
    engine = scoring(models, Traffic("shadow"))
    scored = engine.score(requests(CUSTOMERS[:7]), store)
    written: list[pl.DataFrame] = []
    with PredictionLog(written.append, engine.log_schema, flush_rows=1000) as log:
        log.append(scored.log)
    assert pl.concat(written).equals(scored.log)
