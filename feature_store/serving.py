"""Online retrieval: the stored features and request-time features a prediction needs, now.

Values older than their view's ttl, or newer than ``as_of``, read as null, exactly as the
offline point-in-time join would return them for the same entity and time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import polars as pl

from feature_store.online import OnlineStore
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

    result = entity_rows
    for view_name, names in requested.items():
        view = views[view_name]
        key = view.entity.join_key
        stored = store.read(view_name, entity_rows[key].cast(pl.String).to_list(), names)
        event = pl.col(EVENT_TIMESTAMP)
        at = _time(entity_rows, as_of)
        current = event < at if strictly_before else event <= at
        if view.ttl:
            current &= event >= _oldest_current(entity_rows, as_of, view.ttl)
        values = stored.select(
            pl.when(current).then(pl.col(name)).otherwise(None).alias(name) for name in names
        )
        result = pl.concat([result, values], how="horizontal")
    return with_request_features(result, request_features)


def _time(entity_rows: pl.DataFrame, as_of: datetime | str) -> pl.Expr:
    if isinstance(as_of, str):
        return pl.lit(entity_rows[as_of].cast(pl.Datetime("us")))
    return pl.lit(as_of, dtype=pl.Datetime("us"))


def _oldest_current(entity_rows: pl.DataFrame, as_of: datetime | str, ttl: timedelta) -> pl.Expr:
    """``as_of - ttl`` rounded up to the microsecond grid the store keeps event times on.

    polars reads only whole microseconds of a datetime, flooring a pandas Timestamp's
    nanoseconds: exact for ``event <= as_of``, but for this bound it would admit an event ttl
    plus a few nanoseconds old.
    """
    if isinstance(as_of, str):
        return _time(entity_rows, as_of) - ttl
    oldest = as_of - ttl
    if getattr(oldest, "nanosecond", 0):
        oldest += timedelta(microseconds=1)
    return pl.lit(oldest, dtype=pl.Datetime("us"))


def with_request_features(frame: pl.DataFrame, features: Sequence[RequestFeature]) -> pl.DataFrame:
    """Append request-time features; the offline and online paths both end here."""
    return frame.with_columns(f.compute(frame) for f in features)
