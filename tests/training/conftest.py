"""Small synthetic fraud frames: separable enough that a few epochs learn them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from training.data import Columns

COLUMNS = Columns(
    categorical=("merchant_category", "channel"), numeric=("amount", "velocity"), label="is_fraud"
)


def synthetic_frame(rows: int = 3000, seed: int = 7) -> pl.DataFrame:
    """Fraud is likely for a risky category, a large amount or a high velocity; ~10% positive.

    Rows are split 60/20/20 in order into train, validation and test.
    """
    rng = np.random.default_rng(seed)
    category = rng.choice(["grocery", "travel", "gaming", "fuel", "crypto"], rows)
    channel = rng.choice(["web", "pos", "app"], rows)
    amount = rng.lognormal(3.0, 1.0, rows)
    velocity = rng.normal(0.0, 1.0, rows)
    logit = 3.0 * (category == "crypto") + 2.5 * (np.log(amount) - 3.0) + 2.0 * velocity - 4.0
    fraud = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    split = np.select(
        [np.arange(rows) < 0.6 * rows, np.arange(rows) < 0.8 * rows],
        ["train", "validation"],
        "test",
    )
    return pl.DataFrame(
        {
            "merchant_category": category,
            "channel": channel,
            "amount": amount,
            "velocity": velocity,
            "is_fraud": fraud,
            "split": split,
        }
    )


@pytest.fixture
def frame() -> pl.DataFrame:
    return synthetic_frame()
