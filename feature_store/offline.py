"""The offline store: point-in-time correct feature values for training and batch scoring."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

import polars as pl

from feature_store.online.base import OnlineStore
from feature_store.views import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    EventWindow,
    FeatureView,
    group_references,
)

_ROW = "__entity_row"
_FEATURE_ROW = "__feature_row"
_AT = _ROW + "_at"
_EXACT_AT = _ROW + "_exact_at"
_EVENT = _ROW + "_event"
_NANOSECONDS = {"ns": 1, "us": 1_000, "ms": 1_000_000}
_DAY_NANOSECONDS = 86_400 * 10**9


def _resolution(column: str, dtype: pl.DataType) -> int:
    """The nanoseconds one tick of ``dtype`` spans; a non-temporal ``column`` fails here, by name,
    rather than as a cast error deep inside the plan or as integers read as times."""
    if isinstance(dtype, pl.Datetime):
        return _NANOSECONDS[dtype.time_unit]
    if dtype == pl.Date:
        return _DAY_NANOSECONDS
    raise TypeError(f"{column} is {dtype}; expected a Datetime or Date")


def point_in_time_join(
    entities: pl.LazyFrame,
    features: pl.LazyFrame,
    *,
    join_key: str,
    feature_names: Sequence[str],
    entity_timestamp: str = EVENT_TIMESTAMP,
    ttl: timedelta | None = None,
    rename: Mapping[str, str] | None = None,
    strictly_before: bool = False,
) -> pl.LazyFrame:
    """Each entity row with the feature values that were current at its timestamp.

    The semantics of Feast's ``get_historical_features``: for an entity row with key ``k`` and
    timestamp ``t``, take the feature rows of ``k`` with ``t - ttl <= event_timestamp <= t``
    (no lower bound when ``ttl`` is None or zero), pick the one with the latest event timestamp,
    break ties by the latest ``created_timestamp`` (when the feature rows have one), and return
    its values; when no row qualifies, the values are null. Entity rows keep their order, their
    count and every column, duplicates and null keys or timestamps included (those get nulls).

    ``strictly_before`` takes only feature rows with ``event_timestamp < t``: what an online
    store held when an event arrived that is itself not in the store yet (a training row whose
    own transaction is one of the feature rows, as in a rolling window that includes it).

    Time zones: times compare as instants, a naive time read as UTC. Units: the rule holds
    exactly whichever side is finer, e.g. a nanosecond entity frame from pandas against a
    microsecond feature table.

    Lazy end to end; polars runs it as one sort and one as-of join per view.
    """
    rename = dict(rename or {})
    schema = features.collect_schema()
    entity_type = entities.collect_schema()[entity_timestamp]
    event_type = schema[EVENT_TIMESTAMP]
    # The as-of join runs in the feature table's time type. A coarser entity time casts up to it
    # exactly; a finer one is floored, which keeps ``event <= t`` exact (events lie on the coarser
    # grid) but lowers ``t - ttl``, so the join's tolerance admits events up to a tick beyond the
    # ttl: those matches are checked again in the entity's finer unit. Casting only the matched
    # events up, not the whole table, leaves the same-unit path as it was and keeps feature rows
    # outside the nanosecond range (years 1677 to 2262) joinable.
    finer = _resolution(f"entity column {entity_timestamp!r}", entity_type) < _resolution(
        f"feature column {EVENT_TIMESTAMP!r}", event_type
    )
    recheck = finer and bool(ttl)
    # Strictly before a finer entity time: events lie on the coarser grid, so ``event < t`` is
    # ``event < ceil(t)`` on that grid; the floored time would drop an event between the two.
    strict_at = (
        _ceil_to(pl.col(entity_timestamp), entity_type, event_type)
        if finer and strictly_before
        else None
    )
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
        .select(join_key, pl.col(EVENT_TIMESTAMP).alias(_EVENT), _FEATURE_ROW)
    )
    indexed = entities.with_row_index(_ROW)
    at = pl.col(entity_timestamp)
    matches = (
        indexed.select(
            _ROW,
            join_key,
            (at.cast(event_type) if strict_at is None else strict_at).alias(_AT),
            *([at.alias(_EXACT_AT)] if recheck else []),
        )
        .drop_nulls([join_key, _AT])
        .sort(_AT)
        .join_asof(
            candidates,
            left_on=_AT,
            right_on=_EVENT,
            by=join_key,
            strategy="backward",
            tolerance=ttl if ttl else None,
            check_sortedness=False,
            allow_exact_matches=not strictly_before,
        )
    )
    if recheck:
        # Both sides in the entity's exact type: polars computes mixed units in the coarser one.
        oldest = pl.col(_EXACT_AT) - pl.lit(ttl, dtype=pl.Duration(entity_type.time_unit))
        matches = matches.filter(pl.col(_EVENT).cast(entity_type) >= oldest)
    matches = matches.select(_ROW, _FEATURE_ROW).drop_nulls(_FEATURE_ROW)
    values = matches.join(
        numbered.select(
            _FEATURE_ROW, *(pl.col(name).alias(rename.get(name, name)) for name in feature_names)
        ),
        on=_FEATURE_ROW,
    ).drop(_FEATURE_ROW)
    return indexed.join(values, on=_ROW, how="left", maintain_order="left").drop(_ROW)


def _ceil_to(at: pl.Expr, finer: pl.DataType, coarser: pl.DataType) -> pl.Expr:
    """``at`` (of type ``finer``) rounded up to the grid of ``coarser``."""
    floored = at.cast(coarser)
    tick = (
        pl.duration(days=1)
        if coarser == pl.Date
        else pl.lit(timedelta(microseconds=_resolution("", coarser) / 1_000)).cast(
            pl.Duration(coarser.time_unit)
        )
    )
    return pl.when(floored.cast(finer) < at).then(floored + tick).otherwise(floored)


def get_historical_features(
    entity_df: pl.DataFrame | pl.LazyFrame,
    features: Sequence[str],
    *,
    views: Mapping[str, FeatureView],
    scan: Callable[[str], pl.LazyFrame],
    entity_timestamp: str = EVENT_TIMESTAMP,
    full_feature_names: bool = False,
    strictly_before: bool = False,
) -> pl.DataFrame:
    """Point-in-time feature values for every row of ``entity_df``.

    ``features`` are "view:feature" references; ``entity_df`` needs each referenced view's
    entity join key and ``entity_timestamp``. ``scan`` reads a view's offline table (the
    lakehouse's ``scan``). With ``full_feature_names`` columns are named ``view__feature``;
    with ``strictly_before`` only feature rows dated before the entity time count (what an
    online store served when the entity's own event arrived). See ``point_in_time_join`` for the
    exact semantics.
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
            strictly_before=strictly_before,
        )
    return result.collect(engine="in-memory")


def build_feature_rows(
    view: FeatureView, source: pl.LazyFrame, window: EventWindow, created_at: datetime
) -> pl.DataFrame:
    """One offline partition of ``view``: its transform, cut to the window, typed as declared.

    A transform that forgets a declared feature, returns one of another type, or yields rows that
    cannot be placed in the window fails here with the reason rather than writing a table that
    disagrees with its declaration or silently drops rows.
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
    at = pl.col(EVENT_TIMESTAMP)
    # Rows before the window are the lookback's history; any other row outside it would be lost.
    candidates = rows.filter(~(at < window.start)).collect()
    lost = candidates.filter(pl.col(key).is_null() | at.is_null() | (at >= window.end))
    if not lost.is_empty():
        raise ValueError(
            f"feature view {view.name!r}: the transform produced {lost.height} rows without "
            f"{key} or {EVENT_TIMESTAMP}, or dated at or after the window's end {window.end}; "
            "they would be dropped unseen. Is an event of the source dated after its day?"
        )
    return (
        candidates.select(key, EVENT_TIMESTAMP, *view.schema)
        .with_columns(pl.lit(created_at).cast(pl.Datetime("us")).alias(CREATED_TIMESTAMP))
        .sort(key, EVENT_TIMESTAMP)
        .unique([key, EVENT_TIMESTAMP], keep="last", maintain_order=True)
    )


def latest_per_entity(rows: pl.DataFrame, join_key: str) -> pl.DataFrame:
    """The newest row of each entity (ties: the last created): what the online store holds."""
    order = [EVENT_TIMESTAMP] + ([CREATED_TIMESTAMP] if CREATED_TIMESTAMP in rows.columns else [])
    return rows.sort(order).unique(join_key, keep="last", maintain_order=True)


def push_latest(store: OnlineStore, view: FeatureView, rows: pl.DataFrame) -> int:
    """Write the newest row of each entity of an offline partition to the online store."""
    latest = latest_per_entity(rows, view.entity.join_key).select(
        view.entity.join_key, EVENT_TIMESTAMP, *view.schema
    )
    return store.write(
        view.name, latest, entity_key=view.entity.join_key, timestamp=EVENT_TIMESTAMP
    )
