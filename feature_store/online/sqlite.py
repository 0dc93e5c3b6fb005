"""The single-machine backend: no server to run, and WAL lets readers work during a write."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl

from feature_store.online.base import OnlineStore, ReadPlan, ViewSchema, prepare

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


def _quote(names: Sequence[str]) -> str:
    """Identifiers are validated by check_name, so double quotes cannot occur in them."""
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
            # SQLite cannot bind identifiers; view and column names passed check_name and the
            # type comes from _SQL_TYPES, so no caller-supplied text reaches this statement.
            for name, dtype in new.items():
                self._conn.execute(f'ALTER TABLE "{view}" ADD COLUMN "{name}" {_SQL_TYPES[dtype]}')
        self._record(view, [(name, "feature", dtype) for name, dtype in new.items()])

    def write(self, view: str, frame: pl.DataFrame, *, entity_key: str, timestamp: str) -> int:
        incoming, latest = prepare(view, frame, entity_key, timestamp)
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

    def _fetch(self, plan: ReadPlan, entity_ids: Sequence[str]) -> list[tuple[Any, ...]]:
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
