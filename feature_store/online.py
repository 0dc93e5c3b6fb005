"""The online feature store: the latest feature values per entity, for low-latency serving.

Two backends sit behind one interface: SQLite for a single machine and Redis for a shared,
networked store. Both keep values typed (never pickled), record each view's schema themselves so
a fresh process reads back the right dtypes, and apply the same upsert rule: a stored row is only
replaced by one whose event timestamp is at least as new, so re-materializing an old partition
never rolls features back.
"""

from __future__ import annotations

import json
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import dagster as dg
import polars as pl
import redis
from pydantic import Field

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Canonical dtype names recorded in each view's schema. Datetimes are naive microseconds (UTC).
_DTYPES: dict[str, pl.DataType] = {
    "String": pl.String(),
    "Int64": pl.Int64(),
    "Int32": pl.Int32(),
    "Float64": pl.Float64(),
    "Float32": pl.Float32(),
    "Boolean": pl.Boolean(),
    "Datetime": pl.Datetime("us"),
    "Date": pl.Date(),
}
_SQL_TYPES = {
    "String": "TEXT",
    "Int64": "INTEGER",
    "Int32": "INTEGER",
    "Float64": "REAL",
    "Float32": "REAL",
    "Boolean": "INTEGER",
    "Datetime": "INTEGER",
    "Date": "INTEGER",
}
_SQL_CHUNK = 900  # ids per IN (...) query, well under SQLite's bound-parameter limit
_REDIS_CHUNK = 1000  # upserts per pipeline round trip

# Replace the hash only if its stored timestamp is not newer. ARGV: timestamp field, timestamp,
# number of field/value pairs to set, the pairs, then the fields to delete (null values).
_UPSERT_LUA = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(current) > tonumber(ARGV[2]) then
  return 0
end
local n = tonumber(ARGV[3])
local values = {ARGV[1], ARGV[2]}
for i = 4, 3 + 2 * n do
  values[#values + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(values))
if #ARGV > 3 + 2 * n then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 4 + 2 * n))
end
return 1
"""


# HMGET the same fields from every key and answer with the rows as one JSON document, so the
# client parses one reply with json.loads instead of one reply and one value at a time; that
# parsing dominated batch reads with pipelined HMGETs. ARGV[1] holds one kind per field: "s" for
# text (JSON-quoted), "n" for numbers, sent as stored (repr, integer microseconds or days,
# 1/0 for booleans) with infinities spelled 1e999. Missing fields become null. All keys of one
# call must live on one server (no Redis Cluster).
_GATHER_LUA = """
local kinds = ARGV[1]
local fields = {unpack(ARGV, 2)}
local rows = {}
for i, key in ipairs(KEYS) do
  local values = redis.call('HMGET', key, unpack(fields))
  for j = 1, #fields do
    local v = values[j]
    if not v then
      values[j] = 'null'
    elseif string.byte(kinds, j) == 115 then
      values[j] = cjson.encode(v)
    elseif v == 'inf' then
      values[j] = '1e999'
    elseif v == '-inf' then
      values[j] = '-1e999'
    end
  end
  rows[i] = '[' .. table.concat(values, ',') .. ']'
end
return '[' .. table.concat(rows, ',') .. ']'
"""


def _check_name(kind: str, name: str) -> str:
    """Names become SQL identifiers and Redis key parts, so only plain identifiers pass."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid {kind} name {name!r}: must match {_NAME.pattern}")
    return name


def _dtype_name(column: str, dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            raise ValueError(f"column {column!r} is {dtype}: convert to UTC and drop the zone")
        return "Datetime"
    if str(dtype) not in _DTYPES:
        raise ValueError(
            f"column {column!r} has unsupported dtype {dtype}; supported: {', '.join(_DTYPES)}"
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
class _ReadPlan:
    """Everything a read of one (view, features) pair needs, computed once per store."""

    schema: dict[str, pl.DataType]  # the answer's columns: key, features, timestamp
    fields: tuple[str, ...]  # the stored columns fetched: features, timestamp
    target: str  # SQLite: the SELECT up to "WHERE key"; Redis: the hash key prefix
    kinds: str  # Redis: per field, "s" for text and "n" for numbers (see _GATHER_LUA)


def _prepare(
    view: str, frame: pl.DataFrame, entity_key: str, timestamp: str
) -> tuple[ViewSchema, pl.DataFrame]:
    """Validate a write and reduce it to the latest row per entity (ties: the last row wins).

    NaN is stored as null, since SQLite cannot store NaN and both backends must agree.
    """
    _check_name("view", view)
    for column in frame.columns:
        _check_name("column", column)
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


class OnlineStore(ABC):
    """Latest feature values per entity, keyed by view; usable as a context manager."""

    def __init__(self) -> None:
        self._schemas: dict[str, ViewSchema] = {}
        self._plans: dict[tuple[str, tuple[str, ...]], _ReadPlan] = {}

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
    def _fetch(self, plan: _ReadPlan, entity_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """Rows ``(id, *fields)`` aligned with ``entity_ids``, nulls for unknown ids."""

    def read(self, view: str, entity_ids: Sequence[str], features: Sequence[str]) -> pl.DataFrame:
        """One row per requested id in request order (duplicates kept, nulls for unknown ids):
        the entity key, the requested features in their dtypes, then the event timestamp."""
        plan = self._plans.get((view, tuple(features))) or self._plan(view, features)
        rows = self._fetch(plan, entity_ids)
        if len(rows) == 1:  # from a dict polars skips its row path's Python-side dtype checks
            return pl.DataFrame([dict(zip(plan.schema, rows[0], strict=True))], schema=plan.schema)
        return pl.DataFrame(rows, schema=plan.schema, orient="row")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _plan(self, view: str, features: Sequence[str]) -> _ReadPlan:
        """Build and cache a read plan. The schema is fetched only when the view or a feature is
        new to this instance: recorded columns never change dtype, so the cache stays valid."""
        _check_name("view", view)
        for feature in features:
            _check_name("feature", feature)
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
        plan = _ReadPlan(
            schema={
                schema.entity_key: pl.String(),
                **{f: _DTYPES[d] for f, d in zip(fields, dtypes, strict=True)},
            },
            fields=fields,
            target=self._target(view, schema.entity_key, fields),
            kinds="".join("s" if d == "String" else "n" for d in dtypes),
        )
        self._plans[(view, tuple(features))] = plan
        return plan


def _quote(names: Sequence[str]) -> str:
    """Identifiers are validated by _check_name, so double quotes cannot occur in them."""
    return ", ".join(f'"{n}"' for n in names)


class SQLiteOnlineStore(OnlineStore):
    """One WAL-mode SQLite file: a typed table per view keyed by the entity id, timestamps as
    integer microseconds, and the ``_views`` table recording every view's columns and dtypes."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS _views (view TEXT NOT NULL, name TEXT NOT NULL, "
            "role TEXT NOT NULL, dtype TEXT NOT NULL, PRIMARY KEY (view, name))"
        )

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Schema changes and the upsert commit together, serialized against other writers."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _load_schema(self, view: str) -> ViewSchema | None:
        rows = self._conn.execute(
            "SELECT name, role, dtype FROM _views WHERE view = ? ORDER BY rowid", (view,)
        ).fetchall()
        if not rows:
            return None
        roles = {role: name for name, role, _ in rows}
        features = {name: dtype for name, role, dtype in rows if role == "feature"}
        return ViewSchema(roles["entity_key"], roles["timestamp"], features)

    def _record(self, view: str, columns: list[tuple[str, str, str]]) -> None:
        self._conn.executemany(
            "INSERT INTO _views (view, name, role, dtype) VALUES (?, ?, ?, ?)",
            [(view, *column) for column in columns],
        )

    def _extend(self, view: str, incoming: ViewSchema) -> None:
        """Create the view's table, or add the columns it lacks."""
        key, ts = incoming.entity_key, incoming.timestamp
        stored = self._load_schema(view)
        if stored is None:
            columns = [f'"{key}" TEXT PRIMARY KEY NOT NULL', f'"{ts}" INTEGER NOT NULL']
            columns += [f'"{n}" {_SQL_TYPES[d]}' for n, d in incoming.features.items()]
            table = f'CREATE TABLE "{view}" ({", ".join(columns)}) STRICT, WITHOUT ROWID'
            self._conn.execute(table)
            self._record(view, [(key, "entity_key", "String"), (ts, "timestamp", "Datetime")])
            new = incoming.features
        else:
            new = stored.new_features(view, incoming)
            # SQLite cannot bind identifiers; view and column names passed _check_name and the
            # type comes from _SQL_TYPES, so no caller-supplied text reaches this statement.
            for name, dtype in new.items():
                self._conn.execute(f'ALTER TABLE "{view}" ADD COLUMN "{name}" {_SQL_TYPES[dtype]}')
        self._record(view, [(name, "feature", dtype) for name, dtype in new.items()])

    def write(self, view: str, frame: pl.DataFrame, *, entity_key: str, timestamp: str) -> int:
        incoming, latest = _prepare(view, frame, entity_key, timestamp)
        names = [entity_key, timestamp, *incoming.features]
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in names[1:])
        upsert = (
            f'INSERT INTO "{view}" ({_quote(names)}) VALUES ({", ".join("?" * len(names))}) '
            f'ON CONFLICT ("{entity_key}") DO UPDATE SET {updates} '
            f'WHERE excluded."{timestamp}" >= "{view}"."{timestamp}"'
        )
        rows = latest.select(names).with_columns(pl.col(pl.Datetime, pl.Date).to_physical())
        with self._transaction():
            self._extend(view, incoming)
            before = self._conn.total_changes
            self._conn.executemany(upsert, rows.iter_rows())
            written = self._conn.total_changes - before
        self._schemas.pop(view, None)
        return written

    def _target(self, view: str, entity_key: str, fields: Sequence[str]) -> str:
        return f'SELECT {_quote([entity_key, *fields])} FROM "{view}" WHERE "{entity_key}"'

    def _fetch(self, plan: _ReadPlan, entity_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        nulls = (None,) * len(plan.fields)
        if len(entity_ids) == 1:
            row = self._conn.execute(plan.target + " = ?", (entity_ids[0],)).fetchone()
            return [row or (entity_ids[0], *nulls)]
        found: dict[str, tuple[Any, ...]] = {}
        unique = list(dict.fromkeys(entity_ids))
        for start in range(0, len(unique), _SQL_CHUNK):
            chunk = unique[start : start + _SQL_CHUNK]
            query = f"{plan.target} IN ({', '.join('?' * len(chunk))})"
            found.update((row[0], row) for row in self._conn.execute(query, chunk))
        return [found.get(i) or (i, *nulls) for i in entity_ids]


def _to_text(series: pl.Series) -> list[str | None]:
    """Redis field values: floats by repr (exact round trip), booleans as "1"/"0", datetimes
    and dates as their integer microseconds / days, everything else by its string form."""
    if series.dtype in (pl.Float32, pl.Float64):
        return [None if v is None else repr(v) for v in series.to_list()]
    if series.dtype == pl.Boolean:
        series = series.cast(pl.Int8)
    return series.to_physical().cast(pl.String).to_list()


class RedisOnlineStore(OnlineStore):
    """One hash per entity, ``{prefix}:{view}:{id}``, one text field per feature plus the
    timestamp; a missing field is null. The view's schema is the hash ``{prefix}:{view}``:
    feature -> dtype, with ``@entity_key`` and ``@timestamp`` naming those columns."""

    def __init__(self, url: str, prefix: str = "fs") -> None:
        super().__init__()
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix
        self._upsert = self._client.register_script(_UPSERT_LUA)
        self._gather = self._client.register_script(_GATHER_LUA)

    def close(self) -> None:
        self._client.close()

    def _load_schema(self, view: str) -> ViewSchema | None:
        fields = self._client.hgetall(f"{self._prefix}:{view}")
        if not fields:
            return None
        return ViewSchema(fields.pop("@entity_key"), fields.pop("@timestamp"), fields)

    def _extend(self, view: str, incoming: ViewSchema) -> None:
        """Record new columns with HSETNX, then re-check: a concurrent writer may have won."""
        stored = self._load_schema(view)
        new = incoming.features if stored is None else stored.new_features(view, incoming)
        record = {"@entity_key": incoming.entity_key, "@timestamp": incoming.timestamp, **new}
        with self._client.pipeline(transaction=False) as pipe:
            for name, value in record.items():
                pipe.hsetnx(f"{self._prefix}:{view}", name, value)
            pipe.execute()
        recorded = self._load_schema(view)
        if recorded is None:
            raise RuntimeError(f"the schema of view {view!r} was deleted during the write")
        recorded.new_features(view, incoming)

    def write(self, view: str, frame: pl.DataFrame, *, entity_key: str, timestamp: str) -> int:
        incoming, latest = _prepare(view, frame, entity_key, timestamp)
        self._extend(view, incoming)
        self._schemas.pop(view, None)
        names = list(incoming.features)
        columns = [latest[entity_key].to_list(), _to_text(latest[timestamp])]
        columns += [_to_text(latest[name]) for name in names]
        written = 0
        with self._client.pipeline(transaction=False) as pipe:
            for n, (entity_id, ts, *values) in enumerate(zip(*columns, strict=True), start=1):
                pairs: list[str] = []
                nulls: list[str] = []
                for name, value in zip(names, values, strict=True):
                    if value is None:
                        nulls.append(name)
                    else:
                        pairs += (name, value)
                self._upsert(
                    keys=[f"{self._prefix}:{view}:{entity_id}"],
                    args=[timestamp, ts, len(pairs) // 2, *pairs, *nulls],
                    client=pipe,
                )
                if n % _REDIS_CHUNK == 0:
                    written += sum(pipe.execute())
            written += sum(pipe.execute())
        return written

    def _target(self, view: str, entity_key: str, fields: Sequence[str]) -> str:
        return f"{self._prefix}:{view}:"

    def _fetch(self, plan: _ReadPlan, entity_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(entity_ids), _REDIS_CHUNK):
            chunk = entity_ids[start : start + _REDIS_CHUNK]
            keys = [plan.target + i for i in chunk]
            replies = json.loads(self._gather(keys=keys, args=[plan.kinds, *plan.fields]))
            rows += [(i, *values) for i, values in zip(chunk, replies, strict=True)]
        return rows


_SCHEMES = "sqlite:///<path> or redis://host:port/db"


def open_online_store(url: str) -> OnlineStore:
    """The store a URL names: ``sqlite:///relative.db`` or ``sqlite:////absolute.db``
    (SQLAlchemy's convention), ``redis://`` or ``rediss://host:port/db``."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return SQLiteOnlineStore(url.removeprefix("sqlite:///"))
    if url.startswith(("redis://", "rediss://")):
        return RedisOnlineStore(url)
    raise ValueError(f"unsupported online store URL {url!r}: expected {_SCHEMES}")


class OnlineStoreResource(dg.ConfigurableResource):
    """Gives assets and jobs the deployment's online store; ``with resource.open() as store``."""

    url: str = Field(description=f"Online store URL: {_SCHEMES}.")

    def open(self) -> OnlineStore:
        return open_online_store(self.url)
