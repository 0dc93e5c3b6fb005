"""whylogs profiles of polars frames: build, store, merge and read them.

A profile is a few sketches per column (counts, types, a KLL quantile sketch for numbers, frequent
items for strings, a HyperLogLog distinct count), small enough to keep one per day for ever, and
mergeable, so a reference over any window is the merge of its days and drift never needs raw rows.

How the rows reach whylogs: ``why.log(pandas=...)`` preprocesses every column in pandas with a
Python lambda per value (``isinf`` on every float, type masks on every object): 130,000 rows/s
for seven columns. The sketches themselves take numpy arrays in C++ at tens of millions of values
a second. So ``profile`` preprocesses in polars (drop and count nulls and NaNs, one numpy array per
numeric column) and feeds whylogs' own ``PreprocessedColumn`` to the metrics whylogs' standard
resolver picks for the type, through their ``columnar_update``. Frequent items (strings and
integers) and HyperLogLog (strings) are fed from polars' value counts instead of one Python string
per row. The sketches equal those of ``why.log`` for the same values (tests/monitoring), 20 times
faster, in 2.2 to 2.9 times the time polars takes for the same counts and quantiles
(bench/monitoring.py): what is left is mostly the KLL and HyperLogLog updates themselves.

Differences from ``why.log`` on pandas, on purpose: a null float is a null, not also a NaN; an
integer column with nulls stays integral; booleans are categories "true"/"false".
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import polars as pl
from whylogs.core.metrics.metrics import FrequentItemsMetric
from whylogs.core.preprocessing import NumpyView, PreprocessedColumn
from whylogs.core.schema import ColumnSchema
from whylogs.core.view import ColumnProfileView, DatasetProfileView

NUMERIC_KINDS = ("integral", "fractional")
SUMMARY_SCHEMA = {
    "column": pl.String,
    "type": pl.String,
    "count": pl.Int64,
    "nulls": pl.Int64,
    "mean": pl.Float64,
    "stddev": pl.Float64,
    "min": pl.Float64,
    "p50": pl.Float64,
    "p99": pl.Float64,
    "max": pl.Float64,
    "distinct": pl.Float64,
}


def profile(
    frame: pl.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    dataset_timestamp: datetime | None = None,
) -> DatasetProfileView:
    """Profile ``columns`` (default: every numeric, boolean and string column).

    Nulls and NaNs count as nulls, numbers go to the distribution sketch, strings (and booleans, as
    "true"/"false") to frequent items. Temporal and nested columns are left out of the default,
    since time always drifts, and rejected when named. ``dataset_timestamp`` (default now) is the
    day the profile stands for.
    """
    if columns is None:
        columns = [name for name, dtype in frame.schema.items() if _profiled(dtype)]
    now = datetime.now(UTC)
    return DatasetProfileView(
        columns={name: _column_view(name, frame.get_column(name)) for name in columns},
        dataset_timestamp=dataset_timestamp or now,
        creation_timestamp=now,
    )


def to_bytes(view: DatasetProfileView) -> bytes:
    """whylogs' own protobuf form, readable by any whylogs client (and WhyLabs); never a pickle.
    Profiles are kept as these bytes in Delta tables, so they live, version and travel with
    the lake."""
    return view.serialize()


def from_bytes(data: bytes) -> DatasetProfileView:
    return DatasetProfileView.deserialize(data)


def merge(views: Sequence[DatasetProfileView]) -> DatasetProfileView:
    """One profile of all the rows behind ``views`` (e.g. a reference over a training window)."""
    if not views:
        raise ValueError("merge needs at least one profile")
    return functools.reduce(DatasetProfileView.merge, views)


def column_type(column: ColumnProfileView) -> str:
    """The type whylogs saw most of in the column: integral, fractional, string or boolean; "null"
    when every value was null. Profiles do not store the source dtype, so this is the schema."""
    types = column.get_metric("types")
    if types is None:
        return "null"
    counts = {
        "integral": types.integral.value,
        "fractional": types.fractional.value,
        "string": types.string.value,
        "boolean": types.boolean.value,
    }
    kind, count = max(counts.items(), key=lambda item: item[1])
    return kind if count > 0 else "null"


def summary(view: DatasetProfileView) -> pl.DataFrame:
    """One row per column, by name, what a person reads first: ``count`` is rows, nulls included."""
    rows = []
    for name, column in sorted(view.get_columns().items()):
        counts = column.get_metric("counts")
        row = {
            "column": name,
            "type": column_type(column),
            "count": counts.n.value,
            "nulls": counts.null.value,
            "distinct": _distinct(column),
        }
        distribution = column.get_metric("distribution")
        if distribution is not None and distribution.n > 0:
            kll = distribution.kll.value
            p50, p99 = kll.get_quantiles([0.5, 0.99])
            row |= {
                "mean": distribution.avg,
                "stddev": distribution.stddev,
                "min": kll.get_min_value(),
                "p50": p50,
                "p99": p99,
                "max": kll.get_max_value(),
            }
        rows.append(row)
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)


def _profiled(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or isinstance(
        dtype, pl.Boolean | pl.String | pl.Categorical | pl.Enum | pl.Null
    )


def _column_view(name: str, series: pl.Series) -> ColumnProfileView:
    dtype = series.dtype
    if not _profiled(dtype):
        raise TypeError(f"column {name!r} is {dtype}: only numbers, booleans and strings profile")
    if not dtype.is_numeric():
        return _string_view(name, series.cast(pl.String))
    column = PreprocessedColumn()
    column.len = series.len()
    column.null_count = series.null_count()
    if dtype.is_integer():
        ints = series.drop_nulls().cast(pl.Int64)
        column.numpy = NumpyView(ints=ints.to_numpy())
        metrics = ColumnSchema(dtype=np.dtype(np.int64)).get_metrics(name)
        _count_frequent_items(metrics["frequent_items"], _value_counts(ints))
    else:  # floats and decimals
        floats = series.cast(pl.Float64).drop_nulls()
        column.nan_count = int(floats.is_nan().sum())
        column.null_count += column.nan_count
        column.numpy = NumpyView(floats=floats.filter(floats.is_not_nan()).to_numpy())
        column.inf_count = int(np.isinf(column.numpy.floats).sum())
        metrics = ColumnSchema(dtype=np.dtype(np.float64)).get_metrics(name)
    for namespace, metric in metrics.items():
        if namespace != "frequent_items":
            metric.columnar_update(column)
    return ColumnProfileView(metrics=metrics)


def _string_view(name: str, series: pl.Series) -> ColumnProfileView:
    valid = series.drop_nulls()
    # The dtype pandas hands strings over with; whylogs 1.6 fails on `str` under numpy 2.
    metrics = ColumnSchema(dtype=np.dtype(object)).get_metrics(name)
    column = PreprocessedColumn()
    column.len = series.len()
    column.null_count = series.null_count()
    metrics["counts"].columnar_update(column)
    metrics["types"].string.set(valid.len())
    counts = _value_counts(valid)
    # HyperLogLog ignores repeats: the distinct values alone give the same sketch.
    metrics["cardinality"].hll.value.update_str_list(counts.get_column("value").to_list())
    _count_frequent_items(metrics["frequent_items"], counts)
    return ColumnProfileView(metrics=metrics)


def _count_frequent_items(metric: FrequentItemsMetric, counts: pl.DataFrame) -> None:
    """One weighted update per distinct value (one bulk update for those seen once): the sketch
    that one update per row gives, without a Python object per row."""
    text = pl.col("value").cast(pl.String).str.slice(0, metric.max_frequent_item_size)
    counts = counts.with_columns(text)
    sketch = metric.frequent_strings.value
    sketch.update_str_list(counts.filter(pl.col("n") == 1).get_column("value").to_list())
    for value, n in counts.filter(pl.col("n") > 1).iter_rows():
        sketch.update(value, n)


def _value_counts(values: pl.Series) -> pl.DataFrame:
    return values.rename("value").value_counts(name="n")


def _distinct(column: ColumnProfileView) -> float | None:
    cardinality = column.get_metric("cardinality")
    return None if cardinality is None else cardinality.estimate
