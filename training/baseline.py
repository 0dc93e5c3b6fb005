"""Gradient-boosted trees on the same split: the bar the deep model has to clear.

On tabular data, boosted trees are strong and cheap; a network that does not beat them on the
same train/validation/test rows is not worth its training and serving cost. ``train_baseline``
fits LightGBM with the network's own view of the rows: categorical codes learned on the training
split (``training.data.fit_encoding``, unknown values as ``UNKNOWN``), declared categorical to the
trees; numbers as they are, missing as NaN (trees need no scaling); positives weighted by
negatives per positive of the training split; early stopping on the validation split. Same seed,
same trees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import lightgbm as lgb
import numpy as np
import polars as pl

from training.data import Columns, Encoding, Splits, encode_inputs, fit_encoding

ROUNDS = 1000
"""Most boosting rounds; early stopping usually ends far sooner."""
STOPPING_ROUNDS = 50
"""Rounds without a better validation average precision before training stops."""
THREADS = 2
"""Few threads: LightGBM's determinism holds for a fixed thread count, and tests stay cheap."""


@dataclass(frozen=True)
class Baseline:
    """A trained LightGBM model and the encoding its categorical codes came from."""

    booster: lgb.Booster
    columns: Columns
    encoding: Encoding

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """Fraud probability of each row of ``frame``, with the best validation round's trees."""
        features = _features(frame, self.columns, self.encoding)
        return np.asarray(self.booster.predict(features, num_iteration=self.booster.best_iteration))


def train_baseline(splits: Splits, columns: Columns, seed: int = 0) -> Baseline:
    """Fit on ``splits.train``, stop early on ``splits.validation``; the test split is untouched."""
    encoding = fit_encoding(splits.train, columns)
    labels = _labels(splits.train, columns)
    positives = int(labels.sum())
    if positives == 0:
        raise ValueError("the training split has no positive rows")
    categorical = list(range(len(columns.categorical)))
    names = [*columns.categorical, *columns.numeric]
    train = lgb.Dataset(
        _features(splits.train, columns, encoding),
        label=labels,
        feature_name=names,
        categorical_feature=categorical,
    )
    validation = lgb.Dataset(
        _features(splits.validation, columns, encoding),
        label=_labels(splits.validation, columns),
        reference=train,
    )
    parameters = {
        "objective": "binary",
        "metric": "average_precision",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "scale_pos_weight": (labels.size - positives) / positives,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": THREADS,
        "verbosity": -1,
    }
    booster = lgb.train(
        parameters,
        train,
        num_boost_round=ROUNDS,
        valid_sets=[validation],
        callbacks=[lgb.early_stopping(STOPPING_ROUNDS, verbose=False)],
    )
    return Baseline(booster, columns, encoding)


def _features(frame: pl.DataFrame, columns: Columns, encoding: Encoding) -> np.ndarray:
    """Categorical codes (as the network sees them) then raw numbers, NaN where missing."""
    codes, _ = encode_inputs(frame, replace(columns, numeric=()), encoding)
    numbers = frame.select(pl.col(name).cast(pl.Float64) for name in columns.numeric).to_numpy()
    return np.hstack([codes.numpy().astype(np.float64), numbers.reshape(frame.height, -1)])


def _labels(frame: pl.DataFrame, columns: Columns) -> np.ndarray:
    labels = frame.get_column(columns.label)
    if labels.null_count():
        raise ValueError(f"label column {columns.label!r} has {labels.null_count()} null values")
    return labels.cast(pl.Int8).to_numpy()
