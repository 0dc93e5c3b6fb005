"""The deployed service, as ``bentoml serve`` runs it from a Bento built by ``deployment/<name>``.

The Bento carries the platform's code and declarations and a ``bundle/`` of the served versions
(``serving.bundle``). The bundle says which deployment this is, and so the request schema, the
runtime and the batching; it is read when the module is imported, since BentoML reads the schema
and the batching from the class. All else (stores, token, canary share) comes from ``Settings``
when the service starts.

``POST /predict`` takes ``{"transactions": [...]}``, one or more payments, and answers a list of
``serving.requests.Prediction`` in the same order; BentoML merges concurrent requests into one
model call (adaptive batching). A payment the contract refuses gets a 4xx naming the field. A
customer or merchant the online store does not know reads as null features, which the model
encodes as it did missing values in training: unknown category, training mean.
"""

import functools
import logging
import threading
from pathlib import Path
from typing import Annotated

import bentoml
import torch
from bentoml.validators import ContentType

from feature_store.online import OnlineStore, open_online_store
from registry import discover
from resources.lakehouse import Lakehouse
from resources.settings import Settings
from serving.auth import BearerAuth
from serving.bundle import Bundle
from serving.prediction_log import PredictionLog
from serving.requests import Prediction, request_model, to_frame
from serving.routing import (
    ERRORS_TOTAL,
    LATENCY_BUCKETS,
    LATENCY_SECONDS,
    PREDICTIONS_TOTAL,
    SHARE,
)
from serving.scoring import CHALLENGER, Scoring

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "bundle"
PREDICTIONS_TABLE = "monitoring/predictions"

BUNDLE = Bundle.read(BUNDLE_DIR)
REGISTRY = discover()
DEPLOYMENT = REGISTRY.deployments[BUNDLE.deployment]
SOURCE = REGISTRY.sources[DEPLOYMENT.request_source]
Transaction = request_model(SOURCE, DEPLOYMENT.request_fields)
BATCHING = (
    {
        "batchable": True,
        "max_batch_size": BUNDLE.batching.max_batch_size,
        "max_latency_ms": BUNDLE.batching.max_latency_ms,
    }
    if BUNDLE.batching.max_batch_size > 1
    else {}
)
"""BentoML batches only from two rows up; a batch of one is the plain API."""

logger = logging.getLogger("bentoml.fraud")
predictions = bentoml.metrics.Counter(
    name=PREDICTIONS_TOTAL.removesuffix("_total"),
    documentation="Requests answered, by arm and decision.",
    labelnames=["arm", "decision"],
)
errors = bentoml.metrics.Counter(
    name=ERRORS_TOTAL.removesuffix("_total"),
    documentation="Requests an arm failed to answer (the champion answered instead).",
    labelnames=["arm"],
)
latency = bentoml.metrics.Histogram(
    name=LATENCY_SECONDS,
    documentation="Seconds an arm took to score the batch a request was part of.",
    labelnames=["arm"],
    buckets=LATENCY_BUCKETS,
)

share = bentoml.metrics.Gauge(
    name=SHARE,
    documentation="Share of customers this release routes to the challenger (canary).",
    multiprocess_mode="max",
)


class _Auth(BearerAuth):
    """The token is read when the server builds its app, not when this module is imported."""

    def __init__(self, app: object) -> None:
        super().__init__(app, Settings.from_env().serving_token)  # type: ignore[arg-type]


@bentoml.service(
    name=DEPLOYMENT.name,
    workers=1,
    traffic={"timeout": 30},
    # Each request is in the prediction log (request id, latency); an access line for it too
    # cost the event loop about 5% under load.
    logging={"access": {"enabled": False}},
)
class FraudService:
    def __init__(self) -> None:
        # One worker scores for all connections: torch's intra-op threads would only fight the
        # event loop for the same cores (a one-row p99 of 2-16 ms with two threads, 0.4 with one).
        torch.set_num_threads(1)
        settings = Settings.from_env()
        model = REGISTRY.models[DEPLOYMENT.model]
        self.scoring = Scoring(
            DEPLOYMENT,
            REGISTRY.training_sets[model.training_set],
            SOURCE,
            REGISTRY.views,
            REGISTRY.request_features,
            BUNDLE.load(BUNDLE_DIR),
            share=settings.canary_share,
        )
        lakehouse = Lakehouse(
            root_uri=settings.lakehouse_uri, storage_options=settings.storage_options
        )
        self.log = PredictionLog(
            functools.partial(lakehouse.append, PREDICTIONS_TABLE),
            self.scoring.log_schema,
            logger=logger,
        )
        share.set(settings.canary_share if CHALLENGER in self.scoring.models else 0.0)
        self.online_store_url = settings.online_store_url
        self._local = threading.local()
        versions = {arm: m.version for arm, m in self.scoring.models.items()}
        logger.info(
            "serving %s %s (%s, %s, share %.2f)",
            DEPLOYMENT.model,
            versions,
            BUNDLE.runtime,
            DEPLOYMENT.traffic.mode,
            settings.canary_share,
        )

    # Async: a batch is scored on the event loop itself. Handed to a worker thread instead, it
    # contends with the loop for the GIL, which cost more than the scoring (p50 at 16
    # connections 43 ms threaded, 31 ms on the loop). The response's declared media type
    # spares BentoML deriving it from a JSON schema per response, a fifth of the loop's time.
    @bentoml.api(route="/predict", **BATCHING)
    async def predict(
        self,
        transactions: list[Transaction],  # type: ignore[valid-type]
    ) -> Annotated[list[Prediction], ContentType("application/json")]:
        scored = self.scoring.score(to_frame(transactions, SOURCE), self._store())
        self.log.append(scored.log)
        for outcome in scored.outcomes:
            predictions.labels(arm=outcome.arm, decision="fraud").inc(outcome.fraud)
            predictions.labels(arm=outcome.arm, decision="legitimate").inc(outcome.legitimate)
            errors.labels(arm=outcome.arm).inc(outcome.errors)
            for _ in range(outcome.fraud + outcome.legitimate):
                latency.labels(arm=outcome.arm).observe(outcome.seconds)
        return [Prediction(**answer) for answer in scored.answers]

    @bentoml.on_shutdown
    def close(self) -> None:
        self.log.close()

    def _store(self) -> OnlineStore:
        """Opened on first use, in the thread that scores: a SQLite connection may not cross
        threads."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = open_online_store(self.online_store_url)
        return store


FraudService.add_asgi_middleware(_Auth)
