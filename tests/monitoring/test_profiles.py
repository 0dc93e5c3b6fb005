"""whylogs profiles of polars frames: what they count, that they equal whylogs' own profile of
the same values, and that they survive storage and merging."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import polars as pl
import pytest
import whylogs as why

from monitoring.profiles import from_bytes, merge, profile, summary, to_bytes


def _frame(seed: int = 0, n: int = 4000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    amount[::25] = np.nan  # NaN and null both count as null
    return pl.DataFrame(
        {
            "amount": amount,
            "count_7d": rng.poisson(4, n),
            "probability": rng.beta(2, 30, n),
            "category": rng.choice(["grocery", "travel", "fuel", "online"], n),
            "is_foreign": rng.random(n) < 0.2,
            "ts": [datetime(2024, 3, 1, tzinfo=UTC)] * n,
        }
    ).with_columns(
        pl.when(pl.int_range(pl.len()) % 10 == 0).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("amount", "count_7d", "category")
    )


def _row(view_summary: pl.DataFrame, column: str) -> dict:
    return view_summary.filter(pl.col("column") == column).row(0, named=True)


def test_counts_nulls_types_and_moments() -> None:
    frame = _frame()
    table = summary(profile(frame))

    # By name, and without the timestamp: time always drifts.
    assert table.get_column("column").to_list() == sorted(frame.drop("ts").columns)
    amount = _row(table, "amount")
    values = frame.get_column("amount").fill_nan(None).drop_nulls()
    assert amount["count"] == 4000
    assert amount["nulls"] == 4000 - values.len()  # nulls and NaNs
    assert amount["type"] == "fractional"
    assert amount["mean"] == pytest.approx(values.mean())
    assert amount["stddev"] == pytest.approx(values.std())
    assert (amount["min"], amount["max"]) == (values.min(), values.max())
    assert amount["p50"] == pytest.approx(values.median(), rel=0.02)

    counts = _row(table, "count_7d")
    assert (counts["type"], counts["nulls"]) == ("integral", 400)
    assert counts["distinct"] == pytest.approx(frame.get_column("count_7d").drop_nulls().n_unique())

    category = _row(table, "category")
    assert (category["type"], category["nulls"]) == ("string", 400)
    assert category["distinct"] == pytest.approx(4)
    assert category["mean"] is None  # strings are not in the distribution sketch
    assert _row(table, "is_foreign")["type"] == "string"  # booleans are categories


def test_strings_are_frequent_items_with_exact_counts() -> None:
    frame = _frame()
    items = profile(frame, ["category"]).get_column("category").get_metric("frequent_items")
    sketched = {item.value: item.est for item in items.strings}
    expected = frame.get_column("category").drop_nulls().value_counts()
    assert sketched == dict(expected.iter_rows())


def test_same_sketches_as_why_log() -> None:
    """The fast path feeds whylogs' metrics what ``why.log`` would, so every exact statistic
    agrees with whylogs' own profile of the same rows (quantiles are randomized, compared apart).
    """
    frame = _frame().drop("ts", "is_foreign").with_columns(pl.col("count_7d").fill_null(0))
    ours = profile(frame).to_pandas()
    theirs = why.log(pandas=frame.to_pandas()).view().to_pandas()
    exact = [
        "counts/n",
        "counts/null",  # counts/nan differs: pandas cannot tell a null float from a NaN
        "types/integral",
        "types/fractional",
        "types/string",
        "distribution/n",
        "distribution/mean",
        "distribution/stddev",
        "distribution/min",
        "distribution/max",
        "cardinality/est",
    ]
    for name in exact:
        assert ours[name].tolist() == pytest.approx(theirs[name].tolist(), nan_ok=True), name
    for column in frame.columns:
        assert _items(ours, column) == _items(theirs, column), column
    assert ours["distribution/median"].tolist() == pytest.approx(
        theirs["distribution/median"].tolist(), rel=0.02, nan_ok=True
    )


def _items(summary: pd.DataFrame, column: str) -> list[tuple[str, int]] | None:
    """Frequent items as (value, estimate) pairs, ties in a fixed order; None for floats."""
    items = summary.loc[column, "frequent_items/frequent_strings"]
    return sorted((item.value, item.est) for item in items) if isinstance(items, list) else None


def test_named_temporal_column_is_refused() -> None:
    with pytest.raises(TypeError, match="ts"):
        profile(_frame(), ["ts"])


def test_round_trip_through_protobuf() -> None:
    day = datetime(2024, 3, 1, tzinfo=UTC)
    view = profile(_frame(), dataset_timestamp=day)
    data = to_bytes(view)

    assert data.startswith(b"WHY1")  # whylogs' own format, not a pickle
    read = from_bytes(data)
    assert summary(read).equals(summary(view))
    assert read.dataset_timestamp == day


def test_merge_of_halves_is_the_whole() -> None:
    frame = _frame(n=20_000)
    whole = summary(profile(frame))
    halves = summary(merge([profile(frame.head(10_000)), profile(frame.tail(10_000))]))

    assert halves.select("column", "count", "nulls").equals(
        whole.select("column", "count", "nulls")
    )
    for column in ("amount", "probability"):
        half, full = _row(halves, column), _row(whole, column)
        assert half["mean"] == pytest.approx(full["mean"])
        assert (half["min"], half["max"]) == (full["min"], full["max"])
        values = frame.get_column(column).fill_nan(None).drop_nulls()
        for name, rank in (("p50", 0.5), ("p99", 0.99)):  # KLL's guarantee is on ranks
            assert (values <= half[name]).mean() == pytest.approx(rank, abs=0.005)
            assert (values <= full[name]).mean() == pytest.approx(rank, abs=0.005)


def test_merge_needs_a_profile() -> None:
    with pytest.raises(ValueError, match="at least one"):
        merge([])
