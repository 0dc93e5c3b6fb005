"""What a source table declaration is made of: columns, keys, PII, references and value rules.

A data scientist declares one ``SourceTable`` per file in ``assets/sources/``; bronze compares
every landing file against it to report schema drift, silver types and validates rows with it
(``medallion.contracts`` turns its rules into a pandera contract) and the reference data
generator writes to it. Nothing here knows which tables exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import polars as pl

TIMESTAMP = pl.Datetime("us")
"""The one timestamp type of silver: microseconds, naive UTC."""

EARLIEST_EVENT = "2000-01-01"
"""No event predates it; an older time is a data error (1900, the epoch)."""

FORMATS = ("parquet", "csv", "jsonl", "avro")
"""Landing file formats, named by their file extension."""


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    required: bool = True
    pii: bool = False
    description: str = ""
    aliases: tuple[str, ...] = ()
    """Other names this column is known to arrive under; silver reads them as this column."""
    allowed: tuple[str, ...] = ()
    """The only values accepted, when the column is a closed set (countries, channels)."""
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    """A regular expression every value must match (e.g. a card number's digits)."""


@dataclass(frozen=True)
class Reference:
    """``column`` names an entity of ``table`` (by its primary key) known by the same day.

    An entity that arrived but sits in quarantine still exists: a row pointing at it is valid.
    Only a row whose entity never arrived at all is an orphan, and orphans are quarantined.
    """

    column: str
    table: str


@dataclass(frozen=True)
class SourceTable:
    """A table that arrives as landing files, one folder per day, and becomes bronze and silver."""

    name: str
    primary_key: str
    event_time: str
    columns: tuple[Column, ...]
    description: str = ""
    version_column: str | None = None
    """For versioned entities (profiles): a row is unique by primary key and this column."""
    references: tuple[Reference, ...] = ()
    event_time_tolerance: timedelta | None = timedelta(0)
    """How far an event time may lie outside the day its file landed on; None lifts the day rule
    (a snapshot of old records), leaving only the bounds ``EARLIEST_EVENT`` .. end of that day."""
    owner: str = "team:data-platform"
    pii: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pii", tuple(c.name for c in self.columns if c.pii))
        names = self.column_names
        if len(set(names)) != len(names):
            raise ValueError(f"source table {self.name!r} declares a column twice: {names}")
        for needed in (self.primary_key, self.event_time, self.version_column):
            if needed is not None and needed not in names:
                raise ValueError(f"source table {self.name!r} has no column {needed!r}")
        for ref in self.references:
            if ref.column not in names:
                raise ValueError(f"source table {self.name!r}: reference on unknown {ref.column!r}")
        if self.columns and self.column(self.event_time).dtype != TIMESTAMP:
            raise ValueError(f"source table {self.name!r}: {self.event_time!r} must be TIMESTAMP")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def dtypes(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}

    @property
    def unique_key(self) -> list[str]:
        return [self.primary_key] + ([self.version_column] if self.version_column else [])

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"source table {self.name!r} has no column {name!r}")

    def known_safe(self, name: str) -> bool:
        """A column known not to hold PII: a non-PII contract column, by its name or an alias."""
        return any(not c.pii and name in (c.name, *c.aliases) for c in self.columns)

    def unsafe_columns(self, columns: list[str]) -> list[str]:
        """Columns to pseudonymize before anything is shown or kept outside bronze.

        In a table holding PII every column that is not known to be safe counts as PII, so a
        renamed ``email`` (``e_mail``) is protected like the real one.
        """
        if not self.pii:
            return []
        return [c for c in columns if not self.known_safe(c)]
