"""Feature views as code: what a data scientist declares, one file per view in assets/.

A view names its entity, the asset it is computed from, one transform over polars and the
features that transform yields, with their types, a time to live and a freshness promise. The
engines (offline store, online store, serving) only ever read these declarations, so a feature is
defined once and computed the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl


@dataclass(frozen=True)
class EventWindow:
    """The span of event times one offline partition covers: ``start <= t < end``."""

    start: datetime
    end: datetime


Transform = Callable[[pl.LazyFrame, EventWindow], pl.LazyFrame]

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"


@dataclass(frozen=True)
class Entity:
    name: str
    join_key: str
    description: str = ""


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: pl.DataType
    description: str


@dataclass(frozen=True)
class FeatureView:
    """Rows of (entity key, event timestamp, created timestamp, features) kept in the offline store.

    ``transform`` receives the source rows of one partition's window plus ``lookback`` of history
    before it, and the window itself; it returns rows of the entity key, ``EVENT_TIMESTAMP`` and
    every declared feature. The engine keeps the rows inside the window, one per entity and event
    time, and stamps ``CREATED_TIMESTAMP``.
    """

    name: str
    entity: Entity
    source: tuple[str, ...]
    """Asset key path of the source table, e.g. ("gold", "labeled_transactions")."""
    transform: Transform
    features: tuple[Feature, ...]
    ttl: timedelta
    owner: str
    freshness_sla: timedelta
    description: str
    lookback: timedelta = timedelta(0)
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature view {self.name!r} declares a feature twice: {names}")
        reserved = {self.entity.join_key, EVENT_TIMESTAMP, CREATED_TIMESTAMP}
        if clash := reserved & set(names):
            raise ValueError(f"feature view {self.name!r}: reserved column names {clash}")

    @property
    def table(self) -> str:
        """The view's Delta table in the lakehouse."""
        return f"features/{self.name}"

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {f.name: f.dtype for f in self.features}

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"feature view {self.name!r} has no feature {name!r}")


@dataclass(frozen=True)
class RequestFeature:
    """A feature computed when a request arrives, from request fields and stored features.

    The same polars expression runs on training frames and on single serving requests, which is
    what keeps the two from drifting apart.
    """

    name: str
    dtype: pl.DataType
    description: str
    request_fields: dict[str, pl.DataType]
    inputs: tuple[str, ...]
    """Stored features it reads, as "view:feature" references."""
    expression: pl.Expr

    def column(self) -> pl.Expr:
        """The feature as a column of a frame holding its inputs and request fields."""
        return self.expression.cast(self.dtype).alias(self.name)


def parse_reference(reference: str) -> tuple[str, str]:
    """Split "view:feature" into its parts, with a clear error for anything else."""
    view, sep, feature = reference.partition(":")
    if not sep or not view or not feature:
        raise ValueError(f"feature reference {reference!r} is not of the form 'view:feature'")
    return view, feature


def group_references(
    references: Sequence[str], views: Mapping[str, FeatureView]
) -> dict[str, list[str]]:
    """Requested feature names per view, each checked to be declared."""
    requested: dict[str, list[str]] = {}
    for reference in references:
        view_name, feature = parse_reference(reference)
        if view_name not in views:
            raise KeyError(f"unknown feature view {view_name!r}; known: {sorted(views)}")
        views[view_name].feature(feature)
        requested.setdefault(view_name, []).append(feature)
    return requested
