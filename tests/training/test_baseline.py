"""The LightGBM baseline learns the synthetic problem, the same way every time."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from tests.training.conftest import COLUMNS, synthetic_frame
from training.baseline import Baseline, train_baseline
from training.data import Splits, split_by


@pytest.fixture(scope="module")
def splits() -> Splits:
    return split_by(synthetic_frame())


@pytest.fixture(scope="module")
def baseline(splits: Splits) -> Baseline:
    return train_baseline(splits, COLUMNS, seed=0)


def test_learns_the_synthetic_problem(splits: Splits, baseline: Baseline) -> None:
    scores = baseline.score(splits.test)
    assert scores.shape == (splits.test.height,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert roc_auc_score(splits.test["is_fraud"].to_numpy(), scores) > 0.8
    assert 0 < baseline.booster.best_iteration < 1000  # early stopping ended it


def test_same_seed_same_scores(splits: Splits, baseline: Baseline) -> None:
    again = train_baseline(splits, COLUMNS, seed=0)
    assert np.array_equal(again.score(splits.test), baseline.score(splits.test))


def test_scores_unseen_categories_and_missing_numbers(splits: Splits, baseline: Baseline) -> None:
    rows = splits.test.head(3).with_columns(
        pl.lit("never-seen").alias("merchant_category"),
        pl.lit(None, dtype=pl.Float64).alias("amount"),
    )
    scores = baseline.score(rows.drop("is_fraud"))  # a request has no label
    assert scores.shape == (3,)
    assert np.all(np.isfinite(scores))
