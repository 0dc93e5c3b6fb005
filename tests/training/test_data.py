"""The data path: encoding learned from train only, and epochs that cover every row once."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.training.conftest import COLUMNS
from training.data import (
    SMALL_FRAME,
    UNKNOWN,
    Batches,
    Columns,
    Encoding,
    Tensors,
    encode,
    encode_inputs,
    epoch_batches,
    fit_encoding,
    split_by,
    steps_per_epoch,
)


def test_encoding_is_learned_from_the_training_split_only(frame: pl.DataFrame) -> None:
    splits = split_by(frame)
    # Values that only validation has must not reach the vocabulary or the statistics.
    validation = splits.validation.with_columns(
        pl.lit("lottery").alias("merchant_category"), pl.lit(1e9).alias("amount")
    )
    encoding = fit_encoding(splits.train, COLUMNS)

    assert encoding.vocabularies["merchant_category"] == sorted(
        splits.train["merchant_category"].unique()
    )
    assert encoding.means["amount"] == pytest.approx(splits.train["amount"].mean())
    assert encoding.scales["amount"] == pytest.approx(splits.train["amount"].std(ddof=0))

    train = encode(splits.train, COLUMNS, encoding)
    assert train.numeric.mean(0).abs().max() < 1e-4
    assert train.numeric.std(0, unbiased=False).sub(1).abs().max() < 1e-4
    assert int(train.categorical.min()) >= 1  # every training value is known

    rows = encode(validation, COLUMNS, encoding)
    assert (rows.categorical[:, 0] == UNKNOWN).all()
    assert rows.categorical.dtype == torch.int64
    assert rows.numeric.dtype == rows.label.dtype == torch.float32
    assert rows.label.tolist() == validation["is_fraud"].cast(pl.Float32).to_list()


def test_missing_values_encode_as_unknown_and_the_mean() -> None:
    columns = Columns(("kind",), ("value",), "label")
    train = pl.DataFrame({"kind": ["a", "b", None], "value": [1.0, 3.0, None], "label": [0, 1, 0]})
    encoding = fit_encoding(train, columns)
    assert encoding.vocabularies == {"kind": ["a", "b"]}
    assert encoding.means == {"value": 2.0}

    rows = encode(
        pl.DataFrame(
            {"kind": [None, "b", "z"], "value": [None, float("nan"), 5.0], "label": [1, 0, 1]}
        ),
        columns,
        encoding,
    )
    assert rows.categorical[:, 0].tolist() == [UNKNOWN, 2, UNKNOWN]
    assert rows.numeric[:, 0].tolist() == [0.0, 0.0, 3.0]


def indexed(rows: int) -> Tensors:
    """Rows whose label is their own index, to follow them through an epoch."""
    return Tensors(
        torch.arange(rows).unsqueeze(1),
        torch.arange(rows, dtype=torch.float32).unsqueeze(1),
        torch.arange(rows, dtype=torch.float32),
    )


@pytest.mark.parametrize(("rows", "batch_size"), [(1001, 64), (1000, 100), (7, 3), (257, 1)])
def test_every_row_appears_once_per_epoch_across_two_ranks(rows: int, batch_size: int) -> None:
    tensors = indexed(rows)
    orders = []
    for epoch in range(3):
        per_rank = [
            list(epoch_batches(tensors, batch_size, epoch=epoch, seed=3, rank=rank, world_size=2))
            for rank in range(2)
        ]
        # Every rank takes the same number of steps (DDP's collectives), none of them empty.
        assert len(per_rank[0]) == len(per_rank[1]) == steps_per_epoch(rows, batch_size, 2)
        assert all(len(batch) > 0 for batches in per_rank for batch in batches)
        assert all(len(batch) <= max(batch_size, 2) for batches in per_rank for batch in batches)
        seen = torch.cat([batch.label for batches in per_rank for batch in batches])
        assert sorted(seen.long().tolist()) == list(range(rows))
        for batches in per_rank:
            for batch in batches:  # the three tensors stay row-aligned
                assert torch.equal(batch.categorical[:, 0].float(), batch.label)
        orders.append(seen)
    assert not torch.equal(orders[0], orders[1])  # reshuffled each epoch


def test_ranks_agree_on_the_permutation() -> None:
    """Two processes drawing epoch 5 independently get disjoint shares."""
    tensors = indexed(500)
    first = [list(epoch_batches(tensors, 50, epoch=5, rank=r, world_size=2)) for r in range(2)]
    again = [list(epoch_batches(tensors, 50, epoch=5, rank=r, world_size=2)) for r in range(2)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(torch.cat([x.label for x in a]), torch.cat([x.label for x in b]))


def test_batches_are_slices_of_one_gathered_share() -> None:
    tensors = indexed(1000)
    shuffled = list(epoch_batches(tensors, 100, epoch=0))
    # One gather per epoch; every batch is a view into it, not a copy of its own.
    assert len({batch.label.untyped_storage().data_ptr() for batch in shuffled}) == 1
    assert all(batch.label._base is not None for batch in shuffled)

    ordered = list(epoch_batches(tensors, 100, shuffle=False, rank=1, world_size=2))
    storage = tensors.label.untyped_storage().data_ptr()
    assert all(batch.label.untyped_storage().data_ptr() == storage for batch in ordered)
    assert torch.equal(torch.cat([b.label for b in ordered]), tensors.label[500:])


def test_batches_reshuffle_by_the_epoch_they_are_told_and_come_in_groups() -> None:
    epoch = 0
    batches = Batches(indexed(300), 20, shuffle=True, seed=1, epoch=lambda: epoch, group=4)
    groups = list(batches)
    assert len(batches) == len(groups) == 4  # 15 batches of 20 rows, by 4
    assert [len(group) for group in groups] == [4, 4, 4, 3]

    def labels() -> torch.Tensor:
        return torch.cat([batch.label for group in batches for batch in group])

    first = labels()
    assert torch.equal(first, labels())  # iterating again is not a new epoch
    assert torch.equal(first, torch.cat([b.label for b in epoch_batches(indexed(300), 20, seed=1)]))
    epoch = 1
    assert not torch.equal(first, labels())


def test_split_by_names_what_is_missing(frame: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"\['test'\]"):
        split_by(frame.filter(pl.col("split") != "test"))
    with pytest.raises(ValueError, match="lacks column"):
        fit_encoding(frame.drop("amount"), COLUMNS)


def test_small_and_large_frames_encode_alike_bit_for_bit() -> None:
    """A serving batch goes through numpy, a training frame through polars: same tensors."""
    rng = np.random.default_rng(3)
    rows = SMALL_FRAME + 500
    columns = Columns(("country", "channel"), ("amount", "count", "flag"), label="fraud")
    encoding = Encoding(
        vocabularies={"country": ["DE", "FR", "NL"], "channel": ["online", "pos"]},
        means={"amount": 41.7, "count": 2.0, "flag": 0.3},
        scales={"amount": 13.1, "count": 1.0, "flag": 0.46},
    )
    amounts = rng.lognormal(3, 1, rows)
    amounts[rng.random(rows) < 0.1] = np.nan
    frame = pl.DataFrame(
        {
            "country": pl.Series(rng.choice(["DE", "FR", "NL", "US", "-"], rows)).replace(
                "-", None
            ),
            "channel": pl.Series(rng.choice(["online", "pos", "fax", "-"], rows)).replace(
                "-", None
            ),
            "amount": amounts,
            "count": pl.Series(rng.integers(0, 9, rows)).set(
                pl.Series(rng.random(rows) < 0.1), None
            ),
            "flag": pl.Series(rng.random(rows) < 0.5).set(pl.Series(rng.random(rows) < 0.1), None),
        }
    )
    large = encode_inputs(frame, columns, encoding)
    for part in (frame.head(1), frame.head(SMALL_FRAME)):
        small = encode_inputs(part, columns, encoding)
        assert torch.equal(small[0], large[0][: part.height])
        assert torch.equal(small[1], large[1][: part.height])
