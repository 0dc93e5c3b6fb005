"""The interface every online store backend implements, and the validation they share.

Writes are checked and reduced to the latest row per entity here, and read plans are built and
cached here, so the backends agree on names, dtypes and answers and only differ in storage.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self

import polars as pl

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Canonical dtype names recorded in each view's schema. Datetimes are naive microseconds (UTC).
DTYPES: dict[str, pl.DataType] = {
    "String": pl.String(),
    "Int64": pl.Int64(),
    "Int32": pl.Int32(),
    "Float64": pl.Float64(),
    "Float32": pl.Float32(),
    "Boolean": pl.Boolean(),
    "Datetime": pl.Datetime("us"),
    "Date": pl.Date(),
}


def check_name(kind: str, name: str) -> str:
    """Names become SQL identifiers and Redis key parts, so only plain identifiers pass."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid {kind} name {name!r}: must match {_NAME.pattern}")
    return name


def _dtype_name(column: str, dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            raise ValueError(f"column {column!r} is {dtype}: convert to UTC and drop the zone")
        return "Datetime"
    if str(dtype) not in DTYPES:
        raise ValueError(
            f"column {column!r} has unsupported dtype {dtype}; supported: {', '.join(DTYPES)}"
        )
    return str(dtype)


@dataclass(frozen=True)
class ViewSchema:
    """What a store records about a view: its key and timestamp columns and feature dtypes."""

    entity_key: str
    timestamp: str
    features: dict[str, str]

    def new_features(self, view: str, incoming: ViewSchema) -> dict[str, str]:
        """The features ``incoming`` adds; raises if it contradicts what is recorded."""
        if (incoming.entity_key, incoming.timestamp) != (self.entity_key, self.timestamp):
            raise ValueError(
                f"view {view!r} is keyed by {self.entity_key!r} with timestamp "
                f"{self.timestamp!r}, got {incoming.entity_key!r} / {incoming.timestamp!r}"
            )
        for name, dtype in incoming.features.items():
            if self.features.get(name, dtype) != dtype:
                raise ValueError(
                    f"view {view!r} column {name!r} is stored as {self.features[name]}, "
                    f"cannot write {dtype}"
                )
        return {n: d for n, d in incoming.features.items() if n not in self.features}


@dataclass(frozen=True)
class ReadPlan:
    """Everything a read of one (view, features) pair needs, computed once per store."""

    schema: dict[str, pl.DataType]  # the answer's columns: key, features, timestamp
    fields: tuple[str, ...]  # the stored columns fetched: features, timestamp
    target: str  # SQLite: the SELECT up to "WHERE key"; Redis: the hash key prefix
    kinds: str  # Redis: per field, "s" for text and "n" for numbers (see redis._GATHER_LUA)


def prepare(
    view: str, frame: pl.DataFrame, entity_key: str, timestamp: str
) -> tuple[ViewSchema, pl.DataFrame]:
    """Validate a write and reduce it to the latest row per entity (ties: the last row wins).

    NaN is stored as null, since SQLite cannot store NaN and both backends must agree.
    """
    check_name("view", view)
    for column in frame.columns:
        check_name("column", column)
    for column in (entity_key, timestamp):
        if column not in frame.columns:
            raise ValueError(f"column {column!r} is not in the frame")
    if frame.schema[entity_key] not in (pl.String, pl.Int64, pl.Int32):
        raise ValueError(f"entity key {entity_key!r} must be String or Int64/Int32")
    if _dtype_name(timestamp, frame.schema[timestamp]) != "Datetime":
        raise ValueError(f"timestamp column {timestamp!r} must be a Datetime")
    if frame.select(pl.col(entity_key, timestamp).null_count()).sum_horizontal().item():
        raise ValueError(f"columns {entity_key!r} and {timestamp!r} must not be null")
    features = {
        c: _dtype_name(c, dtype)
        for c, dtype in frame.schema.items()
        if c not in (entity_key, timestamp)
    }
    latest = (
        frame.with_columns(
            pl.col(entity_key).cast(pl.String),
            pl.col(pl.Datetime).dt.cast_time_unit("us"),
            pl.col(pl.Float32, pl.Float64).fill_nan(None),
        )
        .sort(timestamp, maintain_order=True)
        .unique(subset=entity_key, keep="last", maintain_order=True)
    )
    return ViewSchema(entity_key, timestamp, features), latest


class Read(NamedTuple):
    """Features of one view for some entities, as ``OnlineStore.read`` takes them."""

    view: str
    entity_ids: Sequence[str]
    features: Sequence[str]


def _frame(plan: ReadPlan, rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    if len(rows) == 1:  # from a dict polars skips its row path's Python-side dtype checks
        return pl.DataFrame([dict(zip(plan.schema, rows[0], strict=True))], schema=plan.schema)
    return pl.DataFrame(rows, schema=plan.schema, orient="row")


class OnlineStore(ABC):
    """Latest feature values per entity, keyed by view; usable as a context manager."""

    def __init__(self) -> None:
        self._schemas: dict[str, ViewSchema] = {}
        self._plans: dict[tuple[str, tuple[str, ...]], ReadPlan] = {}

    @abstractmethod
    def write(self, view: str, frame: pl.DataFrame, *, entity_key: str, timestamp: str) -> int:
        """Upsert the latest row per entity of ``frame``; a stored row is only replaced by a row
        at least as new, and columns absent from ``frame`` keep their values. New columns
        extend the view's schema; a dtype change raises. Returns the rows actually written."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    @abstractmethod
    def _load_schema(self, view: str) -> ViewSchema | None:
        """The schema recorded in the backend, or None for a view never written."""

    @abstractmethod
    def _target(self, view: str, entity_key: str, fields: Sequence[str]) -> str:
        """The backend's precomputed read target (query or key prefix)."""

    @abstractmethod
    def _fetch(self, plan: ReadPlan, entity_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """Rows ``(id, *fields)`` aligned with ``entity_ids``, nulls for unknown ids."""

    def read(self, view: str, entity_ids: Sequence[str], features: Sequence[str]) -> pl.DataFrame:
        """One row per requested id in request order (duplicates kept, nulls for unknown ids):
        the entity key, the requested features in their dtypes, then the event timestamp."""
        return self.read_many([Read(view, entity_ids, features)])[0]

    def read_many(self, reads: Sequence[Read]) -> list[pl.DataFrame]:
        """Several reads, one answer each as ``read`` gives it: a request needs features of
        several views, and a networked backend fetches them all in one round trip."""
        plans = [self._plan(r.view, r.features) for r in reads]
        fetched = self._fetch_many([(p, r.entity_ids) for p, r in zip(plans, reads, strict=True)])
        return [_frame(plan, rows) for plan, rows in zip(plans, fetched, strict=True)]

    def _fetch_many(
        self, reads: Sequence[tuple[ReadPlan, Sequence[str]]]
    ) -> list[list[tuple[Any, ...]]]:
        """One ``_fetch`` per read; a backend that can send them together overrides this."""
        return [self._fetch(plan, entity_ids) for plan, entity_ids in reads]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _plan(self, view: str, features: Sequence[str]) -> ReadPlan:
        """The read plan, built once per store. The schema is fetched only when the view or a
        feature is new to this instance: recorded columns never change dtype, so it stays valid."""
        if plan := self._plans.get((view, tuple(features))):
            return plan
        check_name("view", view)
        for feature in features:
            check_name("feature", feature)
        if len(set(features)) != len(features):
            raise ValueError(f"duplicate features requested: {list(features)}")
        schema = self._schemas.get(view)
        if schema is None or not set(features) <= schema.features.keys():
            schema = self._load_schema(view)
            if schema is None:
                raise ValueError(f"unknown feature view {view!r}")
            self._schemas[view] = schema
        unknown = [f for f in features if f not in schema.features]
        if unknown:
            raise ValueError(f"view {view!r} has no features {unknown}")
        dtypes = [schema.features[f] for f in features] + ["Datetime"]
        fields = (*features, schema.timestamp)
        plan = ReadPlan(
            schema={
                schema.entity_key: pl.String(),
                **{f: DTYPES[d] for f, d in zip(fields, dtypes, strict=True)},
            },
            fields=fields,
            target=self._target(view, schema.entity_key, fields),
            kinds="".join("s" if d == "String" else "n" for d in dtypes),
        )
        self._plans[(view, tuple(features))] = plan
        return plan
