"""The anchor of ``bench/serving.py``: seed 000's fraud service, built as its design reads.

FastAPI under uvicorn, one worker; the model object unpickled from disk at start-up; an ``async``
handler that reads each feature with its own ``GET`` through a synchronous Redis client, so the
event loop blocks on every read and requests run one at a time; the request features computed
in Python; one ``model.score`` per request. This is the design we measure against, not ours:
unpickling a file is only safe because the benchmark wrote it a moment ago.

The benchmark passes a JSON manifest in ``ANCHOR_MANIFEST``: the Redis URL, the pickle's path,
the decision threshold, the stored features (view, entity field, name, dtype) and the dtype of
every column the model reads. Run it with the repository root first on the path (the pickle
names ``training.trainer.TrainedModel``; ``bench/training.py`` must not shadow that package):
    ANCHOR_MANIFEST=anchor.json PYTHONPATH=bench uvicorn serving_anchor:app --app-dir . --port 8000
"""

from __future__ import annotations

import json
import os
import pickle
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import redis
from fastapi import FastAPI
from pydantic import BaseModel

MANIFEST = json.loads(Path(os.environ["ANCHOR_MANIFEST"]).read_text())
PARSE = {"Float64": float, "Int64": int, "String": str, "Boolean": lambda v: v == "1"}
SCHEMA = {name: getattr(pl, dtype)() for name, dtype in MANIFEST["schema"].items()}
FEATURES = [(f["view"], f["entity"], f["name"], PARSE[f["dtype"]]) for f in MANIFEST["features"]]
THRESHOLD = float(MANIFEST["threshold"])


class Transaction(BaseModel):
    transaction_id: str
    customer_id: str
    merchant_id: str
    amount: float
    channel: str
    device: str | None = None
    event_time: datetime


class PredictRequest(BaseModel):
    transactions: list[Transaction]


class Answer(BaseModel):
    transaction_id: str
    probability: float
    fraud: bool


app = FastAPI()
with Path(MANIFEST["model"]).open("rb") as file:
    model = pickle.load(file)  # the anchor's design; the bench wrote this file
client = redis.Redis.from_url(MANIFEST["redis_url"], decode_responses=True)


def features_of(transaction: Transaction) -> dict[str, Any]:
    """One GET per feature, as the anchor reads them; a missing key is a missing value."""
    row: dict[str, Any] = transaction.model_dump()
    for view, entity, name, parse in FEATURES:
        raw = client.get(f"feat:{view}:{row[entity]}:{name}")
        row[name] = None if raw is None else parse(raw)
    mean = row["amount_mean_30d"]
    row["amount_to_mean_30d"] = None if mean is None else row["amount"] / mean
    home, merchant = row["customer_country"], row["merchant_country"]
    row["is_foreign"] = None if home is None or merchant is None else home != merchant
    return row


@app.post("/predict")
async def predict(request: PredictRequest) -> list[Answer]:
    answers = []
    for transaction in request.transactions:
        row = features_of(transaction)
        frame = pl.DataFrame({name: [row[name]] for name in SCHEMA}, schema=SCHEMA)
        probability = float(model.score(frame)[0])
        answers.append(
            Answer(
                transaction_id=transaction.transaction_id,
                probability=probability,
                fraud=probability >= THRESHOLD,
            )
        )
    return answers
