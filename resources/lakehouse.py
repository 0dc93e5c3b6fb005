"""The one way to read and write the Delta lake.

Every table is partitioned by day in the column ``_partition_date``; writing a partition replaces
exactly that partition (Delta's predicate overwrite), so re-materializing never duplicates rows.
Each write returns the table version it committed, which assets record so any run can be
reproduced later with a time-travel read of that version.

Concurrent writers on S3 (the multiprocess executor, a backfill, the prediction log beside a
run) are safe because every commit is a conditional put: delta-rs writes
``_delta_log/<version>.json`` with ``If-None-Match: *``, so of two writers racing for one version
S3 accepts exactly one, and the other re-reads the log, checks for conflicts and retries at the
next version. ``SAFE_S3_COMMITS`` asks for that explicitly rather than trusting delta-rs'
default. The older ways are gone or unsafe: deltalake 1.x dropped the DynamoDB locking provider
(``AWS_S3_LOCKING_PROVIDER``), and an unconditional commit (``AWS_S3_ALLOW_UNSAFE_RENAME`` of
older versions, or a store that ignores ``If-None-Match``) lets the second writer silently
replace the first's commit, losing its rows.
The store must honour conditional writes: AWS S3 does since 2024, as do MinIO and moto.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, Schema, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions
from pydantic import Field

PARTITION_COLUMN = "_partition_date"
SAFE_S3_COMMITS = {"AWS_CONDITIONAL_PUT": "etag"}
"""delta-rs options that make each commit to S3 a put-if-absent (see the module docstring)."""
COMMIT_ATTEMPTS = 15
"""How often a day's commit is tried while other days' commits keep landing first (delta-rs' own
default for its writer)."""


@dataclass(frozen=True)
class DeltaCommit:
    table: str
    uri: str
    version: int
    rows: int


class Lakehouse(dg.ConfigurableResource):
    """Delta tables under one root: a local folder or an ``s3://`` prefix."""

    root_uri: str = Field(description="Folder or s3:// prefix holding every Delta table.")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs object store options (S3 endpoint, keys)."
    )

    def table_uri(self, table: str) -> str:
        return f"{self.root_uri.rstrip('/')}/{table}"

    def write_partition(self, table: str, frame: pl.DataFrame, partition: str) -> DeltaCommit:
        """Replace one day of ``table`` with ``frame``; new columns are merged into the schema.

        In a local lake, a day whose columns the table already has with the same types (or the
        first day of a new table) is written as one parquet file by polars, which encodes about
        three times faster than delta-rs' writer, and committed by delta-rs as the same
        overwrite of one partition (its log entry counts the rows; readers prune by partition
        and by the parquet file's own statistics). Merging a new column or type, and object
        stores, go through delta-rs' writer. Either way the table's log is read once: the commit
        goes through the opened table, which then knows the version it committed.
        """
        day = date.fromisoformat(partition).isoformat()
        frame = frame.drop(PARTITION_COLUMN, strict=False)
        target = self._open(table)
        schema = _delta_schema(frame) if target is None else target.schema()
        if self._local_root() is not None and _fits(schema, frame):
            return self._commit_day(target, table, schema, frame, day)
        write_deltalake(
            target or self.table_uri(table),
            frame.with_columns(pl.lit(day).alias(PARTITION_COLUMN)).to_arrow(),
            mode="overwrite",
            predicate=f"{PARTITION_COLUMN} = '{day}'",
            partition_by=[PARTITION_COLUMN],
            schema_mode="merge",
            storage_options=self._options(),
        )
        version = target.version() if target is not None else self.version(table)
        return DeltaCommit(table, self.table_uri(table), version, frame.height)

    def _commit_day(
        self, target: DeltaTable | None, table: str, schema: Schema, frame: pl.DataFrame, day: str
    ) -> DeltaCommit:
        """Write the day as one parquet file and commit it in place of the day's files, creating
        the table if ``target`` is None; a day without rows commits only the removal."""
        added = []
        if not frame.is_empty():
            name = f"{PARTITION_COLUMN}={day}/part-00000-{uuid.uuid4()}-c000.snappy.parquet"
            path = Path(self._local_root(), table, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(path, compression="snappy")
            written = path.stat()
            added.append(
                AddAction(
                    path=name,
                    size=written.st_size,
                    partition_values={PARTITION_COLUMN: day},
                    modification_time=written.st_mtime_ns // 1_000_000,
                    data_change=True,
                    stats=json.dumps({"numRecords": frame.height}),
                )
            )
        if target is None:
            create_table_with_add_actions(
                self.table_uri(table), schema, added, mode="error", partition_by=[PARTITION_COLUMN]
            )
            version = self.version(table)
        else:
            _replace_files(target, added, day)
            version = target.version()
        return DeltaCommit(table, self.table_uri(table), version, frame.height)

    def _options(self) -> dict[str, str] | None:
        """The configured storage options, with conditional commits forced on for S3: no
        setting in the environment may turn them off."""
        if self.root_uri.startswith(("s3://", "s3a://")):
            return {**self.storage_options, **SAFE_S3_COMMITS}
        return self.storage_options or None

    def _local_root(self) -> str | None:
        """The lake's folder when it is a plain path on this machine; None for a URI."""
        return None if "://" in self.root_uri else self.root_uri

    def write_table(self, table: str, frame: pl.DataFrame) -> DeltaCommit:
        """Replace the whole of an unpartitioned ``table``; new columns are merged in."""
        write_deltalake(
            self.table_uri(table),
            frame.to_arrow(),
            mode="overwrite",
            schema_mode="merge",
            storage_options=self._options(),
        )
        return DeltaCommit(table, self.table_uri(table), self.version(table), frame.height)

    def append(self, table: str, frame: pl.DataFrame) -> DeltaCommit:
        """Add ``frame``'s rows to an unpartitioned ``table`` (created on first use), keeping
        every row already there, as a log that is never rewritten needs."""
        write_deltalake(
            self.table_uri(table),
            frame.to_arrow(),
            mode="append",
            schema_mode="merge",
            storage_options=self._options(),
        )
        return DeltaCommit(table, self.table_uri(table), self.version(table), frame.height)

    def scan(
        self,
        table: str,
        *,
        partitions: list[str] | None = None,
        version: int | None = None,
    ) -> pl.LazyFrame:
        """Lazily read ``table``, optionally only some days and as of a recorded version."""
        frame = pl.scan_delta(
            self.table_uri(table),
            version=version,
            storage_options=self._options(),
        )
        if partitions is not None:
            days = [date.fromisoformat(p).isoformat() for p in partitions]
            frame = frame.filter(pl.col(PARTITION_COLUMN).is_in(days))
        return frame

    def scan_days(
        self, table: str, first: date | None = None, last: date | None = None
    ) -> tuple[pl.LazyFrame, int] | None:
        """Days ``first`` .. ``last`` of ``table`` (every day if None) without the partition
        column, as an asset reads its input, and the version read; None if never written.

        One read of the table's log both pins the version and plans the scan.
        """
        snapshot = self._open(table)
        if snapshot is None:
            return None
        version = snapshot.version()
        frame = pl.scan_delta(snapshot, version=version)
        if first is not None:
            frame = frame.filter(pl.col(PARTITION_COLUMN) >= first.isoformat())
        if last is not None:
            frame = frame.filter(pl.col(PARTITION_COLUMN) <= last.isoformat())
        return frame.drop(PARTITION_COLUMN, strict=False), version  # none when unpartitioned

    def scan_or_empty(
        self, table: str, schema: pl.Schema, *, partitions: list[str] | None = None
    ) -> pl.LazyFrame:
        """Like ``scan``, but a table nobody has written yet reads as empty."""
        if not self.exists(table):
            return pl.LazyFrame(schema=schema)
        return self.scan(table, partitions=partitions)

    def exists(self, table: str) -> bool:
        return self.version(table) is not None

    def version(self, table: str) -> int | None:
        snapshot = self._open(table)
        return None if snapshot is None else snapshot.version()

    def _open(self, table: str) -> DeltaTable | None:
        """The table at its latest version; None if nobody has written it yet."""
        try:
            return DeltaTable(self.table_uri(table), storage_options=self._options())
        except TableNotFoundError:
            return None


def _replace_files(target: DeltaTable, added: list[AddAction], day: str) -> None:
    """Commit ``added`` as the day's only files, then bring ``target`` up to the new version.

    A commit made meanwhile that left the day's files alone (another day of a backfill) is no
    conflict: the commit is retried on top of it, as delta-rs' predicate overwrite does. One that
    changed the day's files is a conflict, and raises.
    """
    the_day = [(PARTITION_COLUMN, "=", day)]

    def day_files() -> set[str]:
        return set(target.file_uris(file_pruning_predicate=the_day))

    read = day_files()
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            target.create_write_transaction(
                added,
                mode="overwrite",
                schema=target.schema(),
                partition_by=[PARTITION_COLUMN],
                partition_filters=the_day,
            )
            break
        except CommitFailedError:
            target.update_incremental()
            if attempt == COMMIT_ATTEMPTS or day_files() != read:
                raise
    target.update_incremental()


def _delta_schema(frame: pl.DataFrame) -> Schema:
    """The schema of a new table holding ``frame``, partition column included."""
    partitioned = frame.head(0).with_columns(pl.lit(None, pl.String).alias(PARTITION_COLUMN))
    return Schema.from_arrow(partitioned.to_arrow().schema)


def _fits(schema: Schema, frame: pl.DataFrame) -> bool:
    """Every column of ``frame`` is in ``schema`` with the same type, one that polars writes to
    parquet as Delta stores it: nothing to merge or convert."""
    table = pl.from_arrow(pa.schema(schema.to_arrow()).empty_table()).schema
    return all(_plain(dtype) and table.get(name) == dtype for name, dtype in frame.schema.items())


def _plain(dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.List):
        return _plain(dtype.inner)
    if isinstance(dtype, pl.Datetime):
        return dtype.time_unit == "us" and dtype.time_zone in (None, "UTC")
    return dtype in (pl.String, pl.Boolean, pl.Int32, pl.Int64, pl.Float32, pl.Float64, pl.Date)
