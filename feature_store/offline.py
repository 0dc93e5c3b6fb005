"""The offline store: point-in-time correct feature values for training and batch scoring."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

import polars as pl

from feature_store.views import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FeatureView,
    Window,
    group_references,
)

_ROW = "__entity_row"
_FEATURE_ROW = "__feature_row"


def point_in_time_join(
    entities: pl.LazyFrame,
    features: pl.LazyFrame,
    *,
    join_key: str,
    feature_names: Sequence[str],
    entity_timestamp: str = EVENT_TIMESTAMP,
    ttl: timedelta | None = None,
    rename: Mapping[str, str] | None = None,
) -> pl.LazyFrame:
    """Each entity row with the feature values that were current at its timestamp.

    The semantics of Feast's ``get_historical_features``: for an entity row with key ``k`` and
    timestamp ``t``, take the feature rows of ``k`` with ``t - ttl <= event_timestamp <= t``
    (no lower bound when ``ttl`` is None or zero), pick the one with the latest event timestamp,
    break ties by the latest ``created_timestamp`` (when the feature rows have one), and return
    its values; when no row qualifies, the values are null. Entity rows keep their order, their
    count and every column, duplicates and null keys or timestamps included (those get nulls).

    Lazy end to end; polars runs it as one sort and one as-of join per view.
    """
    rename = dict(rename or {})
    schema = features.collect_schema()
    # The candidates go sorted by (event time, created time): join_asof "backward" takes the
    # *last* right row at or before the entity time, so of several rows at one event time it
    # takes the last created, with no separate dedupe. Only the row number travels through the
    # sort and the as-of join; the feature values are fetched for the matched rows alone.
    order = [EVENT_TIMESTAMP] + ([CREATED_TIMESTAMP] if CREATED_TIMESTAMP in schema.names() else [])
    numbered = features.with_row_index(_FEATURE_ROW)
    candidates = (
        numbered.select(_FEATURE_ROW, join_key, *order)
        .drop_nulls([join_key, EVENT_TIMESTAMP])
        .sort(order)
        .select(join_key, pl.col(EVENT_TIMESTAMP).alias(_ROW + "_event"), _FEATURE_ROW)
    )
    indexed = entities.with_row_index(_ROW)
    matches = (
        indexed.select(
            _ROW,
            join_key,
            pl.col(entity_timestamp).cast(schema[EVENT_TIMESTAMP]).alias(_ROW + "_at"),
        )
        .drop_nulls([join_key, _ROW + "_at"])
        .sort(_ROW + "_at")
        .join_asof(
            candidates,
            left_on=_ROW + "_at",
            right_on=_ROW + "_event",
            by=join_key,
            strategy="backward",
            tolerance=ttl if ttl else None,
            check_sortedness=False,
        )
        .select(_ROW, _FEATURE_ROW)
        .drop_nulls(_FEATURE_ROW)
    )
    values = matches.join(
        numbered.select(
            _FEATURE_ROW, *(pl.col(name).alias(rename.get(name, name)) for name in feature_names)
        ),
        on=_FEATURE_ROW,
    ).drop(_FEATURE_ROW)
    return indexed.join(values, on=_ROW, how="left", maintain_order="left").drop(_ROW)


def get_historical_features(
    entity_df: pl.DataFrame | pl.LazyFrame,
    features: Sequence[str],
    *,
    views: Mapping[str, FeatureView],
    scan: Callable[[str], pl.LazyFrame],
    entity_timestamp: str = EVENT_TIMESTAMP,
    full_feature_names: bool = False,
) -> pl.DataFrame:
    """Point-in-time feature values for every row of ``entity_df``.

    ``features`` are "view:feature" references; ``entity_df`` needs each referenced view's
    entity join key and ``entity_timestamp``. ``scan`` reads a view's offline table (the
    lakehouse's ``scan``). With ``full_feature_names`` columns are named ``view__feature``.
    See ``point_in_time_join`` for the exact semantics.
    """
    requested = group_references(features, views)

    outputs = [
        f"{view}__{name}" if full_feature_names else name
        for view, names in requested.items()
        for name in names
    ]
    if clash := {n for n in outputs if outputs.count(n) > 1}:
        raise ValueError(
            f"features {sorted(clash)} come from several views; use full_feature_names"
        )
    result = entity_df.lazy()
    for view_name, names in requested.items():
        view = views[view_name]
        result = point_in_time_join(
            result,
            scan(view.table),
            join_key=view.entity.join_key,
            feature_names=names,
            entity_timestamp=entity_timestamp,
            ttl=view.ttl,
            rename={n: f"{view_name}__{n}" for n in names} if full_feature_names else None,
        )
    return result.collect(engine="in-memory")


def build_feature_rows(
    view: FeatureView, source: pl.LazyFrame, window: Window, created_at: datetime
) -> pl.DataFrame:
    """One offline partition of ``view``: its transform, cut to the window, typed as declared.

    A transform that forgets a declared feature, or returns one of another type, fails here
    with the feature's name rather than writing a table that disagrees with its declaration.
    """
    key = view.entity.join_key
    rows = view.transform(source, window)
    produced = rows.collect_schema()
    missing = [c for c in (key, EVENT_TIMESTAMP, *view.schema) if c not in produced]
    if missing:
        raise ValueError(f"feature view {view.name!r}: transform did not produce {missing}")
    wrong = {
        name: f"declared {dtype}, produced {produced[name]}"
        for name, dtype in view.schema.items()
        if produced[name] != dtype
    }
    if wrong:
        raise TypeError(f"feature view {view.name!r}: feature types differ: {wrong}")
    return (
        rows.filter(pl.col(EVENT_TIMESTAMP).is_between(window.start, window.end, closed="left"))
        .drop_nulls([key, EVENT_TIMESTAMP])
        .select(key, EVENT_TIMESTAMP, *view.schema)
        .with_columns(pl.lit(created_at).cast(pl.Datetime("us")).alias(CREATED_TIMESTAMP))
        .sort(key, EVENT_TIMESTAMP)
        .unique([key, EVENT_TIMESTAMP], keep="last", maintain_order=True)
        .collect()
    )


def latest_per_entity(rows: pl.DataFrame, join_key: str) -> pl.DataFrame:
    """The newest row of each entity (ties: the last created): what the online store holds."""
    order = [EVENT_TIMESTAMP] + ([CREATED_TIMESTAMP] if CREATED_TIMESTAMP in rows.columns else [])
    return rows.sort(order).unique(join_key, keep="last", maintain_order=True)
