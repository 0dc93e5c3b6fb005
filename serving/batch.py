"""Batch scoring: a day of events scored as the service would have scored each one on arrival."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl

from feature_store.views import FeatureView, RequestFeature
from serving.bundle import ServedModel
from training.sets import TrainingSet, feature_columns, offline_features


def score_events(
    events: pl.DataFrame,
    key: str,
    spec: TrainingSet,
    views: Mapping[str, FeatureView],
    scan: Callable[[str], pl.LazyFrame],
    request_features: Mapping[str, RequestFeature],
    model: ServedModel,
) -> pl.DataFrame:
    """One row per event: its ``key``, time, every input of the model as it was scored, and
    the version's probability and decision (the inputs are what monitoring profiles).

    Features are joined strictly before each event (``offline_features``), which is what the
    online store holds when the event arrives, so a served score equals the batch score of the
    same event.
    """
    frame = offline_features(spec, events, views, scan, request_features)
    probability = model.scorer.score(frame) if frame.height else []
    inputs = dict.fromkeys([key, spec.event_time, *feature_columns(spec)])
    return frame.select(*inputs).with_columns(
        pl.lit(model.version).alias("model_version"),
        pl.Series("probability", probability, dtype=pl.Float64),
        pl.lit(model.threshold).alias("threshold"),
        (pl.Series("probability", probability, dtype=pl.Float64) >= model.threshold).alias("fraud"),
    )
