"""The one way to read and write the Delta lake.

Every table is partitioned by day in the column ``_partition_date``; writing a partition replaces
exactly that partition (Delta's predicate overwrite), so re-materializing never duplicates rows.
Each write returns the table version it committed, which assets record so any run can be
reproduced later with a time-travel read of that version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg
import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError
from pydantic import Field

PARTITION_COLUMN = "_partition_date"


@dataclass(frozen=True)
class Commit:
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

    def write_partition(self, table: str, frame: pl.DataFrame, partition: str) -> Commit:
        """Replace one day of ``table`` with ``frame``; new columns are merged into the schema."""
        day = date.fromisoformat(partition).isoformat()
        data = frame.with_columns(pl.lit(day).alias(PARTITION_COLUMN))
        write_deltalake(
            self.table_uri(table),
            data.to_arrow(),
            mode="overwrite",
            predicate=f"{PARTITION_COLUMN} = '{day}'",
            partition_by=[PARTITION_COLUMN],
            schema_mode="merge",
            storage_options=self.storage_options or None,
        )
        return Commit(table, self.table_uri(table), self.version(table), data.height)

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
            storage_options=self.storage_options or None,
        )
        if partitions is not None:
            days = [date.fromisoformat(p).isoformat() for p in partitions]
            frame = frame.filter(pl.col(PARTITION_COLUMN).is_in(days))
        return frame

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
        try:
            return DeltaTable(
                self.table_uri(table), storage_options=self.storage_options or None
            ).version()
        except TableNotFoundError:
            return None
