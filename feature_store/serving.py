"""Online retrieval: the stored features and request-time features a prediction needs, now.

Values older than their view's ttl, or newer than ``as_of``, read as null, exactly as the
offline point-in-time join would return them for the same entity and time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from feature_store.online import OnlineStore, Read
from feature_store.views import (
    EVENT_TIMESTAMP,
    FeatureView,
    RequestFeature,
    group_references,
)


def get_online_features(
    store: OnlineStore,
    entity_rows: pl.DataFrame,
    features: Sequence[str],
    *,
    views: Mapping[str, FeatureView],
    as_of: datetime | str,
    request_features: Sequence[RequestFeature] = (),
    strictly_before: bool = False,
) -> pl.DataFrame:
    """``entity_rows`` (join keys and request fields) with each "view:feature" appended.

    ``as_of`` is one naive UTC time for every row (like the store's timestamps; a pandas
    Timestamp's nanoseconds count), or the name of a column of ``entity_rows`` holding each row's
    own time, as a batch of requests carries. ``strictly_before`` leaves out a value stamped at
    exactly that time, as the training set's join does.
    """
    if isinstance(as_of, datetime) and as_of.tzinfo is not None:
        raise ValueError(
            f"as_of {as_of} has a time zone, but the online store keeps naive UTC times: "
            "pass as_of.astimezone(UTC).replace(tzinfo=None)"
        )
    requested = group_references(features, views)
    stored = store.read_many(
        [
            Read(name, entity_rows[views[name].entity.join_key].cast(pl.String).to_list(), names)
            for name, names in requested.items()
        ]
    )
    at = _time(entity_rows, as_of)
    columns: list[pl.Series] = []
    for (view_name, names), values in zip(requested.items(), stored, strict=True):
        event = values[EVENT_TIMESTAMP].to_numpy()  # NaT, an unknown entity, compares false
        current = event < at if strictly_before else event <= at
        if ttl := views[view_name].ttl:
            current &= event >= _oldest_current(at, as_of, ttl)
        columns += [_where(values[name], current) for name in names]
    return with_request_features(entity_rows.hstack(columns), request_features)


def _where(values: pl.Series, current: np.ndarray) -> pl.Series:
    """``values`` where ``current``, null elsewhere. The times are compared in numpy: at a
    request's few rows, polars' fixed cost per operation, not the data, sets the latency."""
    if current.all():
        return values
    return values.zip_with(pl.Series(current), pl.Series(values.name, [None], dtype=values.dtype))


def _time(entity_rows: pl.DataFrame, as_of: datetime | str) -> np.ndarray:
    """Each row's time, or the one ``as_of``, as polars reads it: whole microseconds."""
    times = entity_rows[as_of] if isinstance(as_of, str) else pl.Series([as_of])
    return times.cast(pl.Datetime("us")).to_numpy()


def _oldest_current(at: np.ndarray, as_of: datetime | str, ttl: timedelta) -> np.ndarray:
    """``as_of - ttl`` rounded up to the microsecond grid the store keeps event times on.

    polars reads only whole microseconds of a datetime, flooring a pandas Timestamp's
    nanoseconds: exact for ``event <= as_of``, but for this bound it would admit an event ttl
    plus a few nanoseconds old.
    """
    oldest = at - np.timedelta64(ttl)
    if not isinstance(as_of, str) and getattr(as_of - ttl, "nanosecond", 0):
        oldest += np.timedelta64(1, "us")
    return oldest


def with_request_features(frame: pl.DataFrame, features: Sequence[RequestFeature]) -> pl.DataFrame:
    """Append request-time features; the offline and online paths both end here."""
    return frame.with_columns(f.column() for f in features) if features else frame
