"""One batch of requests scored: features as training saw them, the arm, the answer, the log.

Nothing here knows HTTP or BentoML: the service hands each adaptive batch to ``Scoring.score``,
and tests and the benchmark call it directly. The features come from ``training.sets``'
``online_features``, the same declarations the training set was built with.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from feature_store.online import OnlineStore
from feature_store.views import FeatureView, RequestFeature, parse_reference
from medallion.sources import SourceTable
from serving.bundle import ServedModel
from serving.deployments import Deployment
from serving.routing import Arm, route
from training.sets import TrainingSet, feature_columns, feature_references, online_features

CHAMPION: Arm = "champion"
CHALLENGER: Arm = "challenger"


@dataclass(frozen=True)
class Outcome:
    """What the metrics count for one arm's part of a batch."""

    arm: Arm
    fraud: int
    legitimate: int
    errors: int
    seconds: float


@dataclass(frozen=True)
class Scored:
    answers: list[dict[str, object]]
    """One per request, in order: the fields of ``serving.requests.Prediction``."""
    log: pl.DataFrame
    """One row per request and arm scored (a shadow arm's rows are ``served`` false)."""
    outcomes: list[Outcome]


class Scoring:
    """The request path of one deployment, given its declarations and its loaded models."""

    def __init__(
        self,
        deployment: Deployment,
        spec: TrainingSet,
        source: SourceTable,
        views: Mapping[str, FeatureView],
        request_features: Mapping[str, RequestFeature],
        models: Mapping[Arm, ServedModel],
        share: float = 0.0,
    ) -> None:
        if CHAMPION not in models:
            raise ValueError(f"deployment {deployment.name!r} has no champion to serve")
        self.deployment = deployment
        self.spec = spec
        self.source = source
        self.views = views
        self.request_features = request_features
        self.models = models
        self.share = share
        """The canary's current share of customers on the challenger."""
        self.features = [c for c in feature_columns(spec) if c not in deployment.request_fields]
        self.log_schema = self._log_schema()

    def score(self, requests: pl.DataFrame, store: OnlineStore) -> Scored:
        started = time.perf_counter()
        scored_at = datetime.now(UTC).replace(tzinfo=None)
        rows = online_features(self.spec, store, requests, self.views, self.request_features)
        served, shadow = self._routes(rows[self.deployment.routing_key].to_list())
        probabilities: dict[Arm, np.ndarray] = {}
        outcomes: list[Outcome] = []
        for arm in (CHAMPION, CHALLENGER):
            wanted = (served == arm) | (shadow == arm)
            if not wanted.any():
                continue
            arm_started = time.perf_counter()
            try:
                probability = np.full(rows.height, np.nan, dtype=np.float32)
                asked = rows if wanted.all() else rows.filter(wanted)
                probability[wanted] = self.models[arm].scorer.score(asked)
            except Exception:
                if arm == CHAMPION:
                    raise
                # A failing challenger never fails a request: its customers get the champion.
                outcomes.append(Outcome(arm, 0, 0, int((served == arm).sum()), 0.0))
                served[served == arm] = CHAMPION
                shadow[shadow == arm] = ""
                probabilities[CHAMPION] = self._rescore(rows, probabilities, served)
                continue
            probabilities[arm] = probability
            fraud = probability[served == arm] >= self.models[arm].threshold
            seconds = time.perf_counter() - arm_started
            outcomes.append(Outcome(arm, int(fraud.sum()), int((~fraud).sum()), 0, seconds))
        request_ids = [uuid.uuid4().hex for _ in range(rows.height)]
        answers = [
            self._answer(transaction, request_id, arm, float(probabilities[arm][i]))
            for i, (transaction, request_id, arm) in enumerate(
                zip(rows[self.source.primary_key].to_list(), request_ids, served, strict=True)
            )
        ]
        latency_ms = (time.perf_counter() - started) * 1000
        log = self._log(rows, request_ids, served, shadow, probabilities, scored_at, latency_ms)
        return Scored(answers, log, outcomes)

    def _routes(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        traffic = self.deployment.traffic
        if CHALLENGER not in self.models:
            return np.full(len(keys), CHAMPION, dtype=object), np.full(len(keys), "", dtype=object)
        routes = [route(traffic, key, self.share) for key in keys]
        return (
            np.array([r.served for r in routes], dtype=object),
            np.array([r.shadow or "" for r in routes], dtype=object),
        )

    def _rescore(
        self, rows: pl.DataFrame, probabilities: dict[Arm, np.ndarray], served: np.ndarray
    ) -> np.ndarray:
        """The champion's scores, computed now for rows it was not asked about before."""
        probability = probabilities.get(CHAMPION, np.full(rows.height, np.nan, dtype=np.float32))
        missing = (served == CHAMPION) & np.isnan(probability)
        if missing.any():
            probability[missing] = self.models[CHAMPION].scorer.score(rows.filter(missing))
        return probability

    def _answer(
        self, transaction: str, request_id: str, arm: Arm, probability: float
    ) -> dict[str, object]:
        model = self.models[arm]
        return {
            "transaction_id": transaction,
            "request_id": request_id,
            "probability": probability,
            "fraud": probability >= model.threshold,
            "threshold": model.threshold,
            "model_version": model.version,
            "arm": arm,
        }

    def _log(
        self,
        rows: pl.DataFrame,
        request_ids: list[str],
        served: np.ndarray,
        shadow: np.ndarray,
        probabilities: dict[Arm, np.ndarray],
        scored_at: datetime,
        latency_ms: float,
    ) -> pl.DataFrame:
        arms = list(probabilities)
        picked = [np.flatnonzero((served == arm) | (shadow == arm)) for arm in arms]
        index = np.concatenate(picked)
        arm = np.repeat(np.array(arms, dtype=object), [len(p) for p in picked])
        probability = np.concatenate(
            [probabilities[a][p] for a, p in zip(arms, picked, strict=True)]
        ).astype(np.float64)
        threshold = np.repeat([self.models[a].threshold for a in arms], [len(p) for p in picked])
        prediction = {
            "request_id": np.array(request_ids, dtype=object)[index],
            "deployment": np.full(len(index), self.deployment.name, dtype=object),
            "arm": arm,
            "model_version": np.array([self.models[a].version for a in arm], dtype=object),
            "served": served[index] == arm,
            "probability": probability,
            "threshold": threshold,
            "fraud": probability >= threshold,
            "scored_at": np.full(len(index), np.datetime64(scored_at, "us")),
            "latency_ms": np.full(len(index), latency_ms),
            "batch_size": np.full(len(index), rows.height),
        }
        # Series, not expressions: at a request's few rows polars' per-expression cost dominates.
        taken = rows if np.array_equal(index, np.arange(rows.height)) else rows[index]
        frame = pl.DataFrame(
            [
                pl.Series(name, prediction[name], dtype) if name in prediction else taken[name]
                for name, dtype in self.log_schema.items()
            ]
        )
        return frame if frame.schema == self.log_schema else frame.cast(self.log_schema)

    def _log_schema(self) -> dict[str, pl.DataType]:
        """The columns of ``monitoring/predictions``: the request, every feature as served, and
        the prediction, so a row leads back to the model version and its training data."""
        features: dict[str, pl.DataType] = {}
        for reference in feature_references(self.spec, self.request_features):
            view, name = parse_reference(reference)
            features[name] = self.views[view].feature(name).dtype
        features |= {n: self.request_features[n].dtype for n in self.spec.request_features}
        return {
            "request_id": pl.String(),
            **{f: self.source.dtypes[f] for f in self.deployment.request_fields},
            **{f: features[f] for f in self.features},
            "deployment": pl.String(),
            "arm": pl.String(),
            "model_version": pl.String(),
            "served": pl.Boolean(),
            "probability": pl.Float64(),
            "threshold": pl.Float64(),
            "fraud": pl.Boolean(),
            "scored_at": pl.Datetime("us"),
            "latency_ms": pl.Float64(),
            "batch_size": pl.Int64(),
        }
