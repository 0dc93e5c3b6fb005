"""Compare a landing file's schema with the contract, so drift is reported instead of dropped."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import polars as pl

from medallion.sources import SourceTable


@dataclass(frozen=True)
class SchemaDrift:
    added: list[str]
    removed: list[str]
    renamed: dict[str, str]
    """Contract name to the name it arrived under; a known alias is still reported."""
    retyped: dict[str, str]
    """Column to 'expected -> found' for typed formats."""

    @property
    def has_drift(self) -> bool:
        return bool(self.added or self.removed or self.renamed or self.retyped)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_numeric():
        return "number"
    if dtype.is_temporal():
        return "timestamp"
    if dtype == pl.Null:
        return "null"
    return "text"


def detect_schema_drift(spec: SourceTable, schema: pl.Schema, *, typed: bool) -> SchemaDrift:
    """Added, removed, renamed and retyped columns of one file against ``spec``.

    A removed contract column is called renamed when a new column is one of its declared aliases
    or contains its name (``amount`` -> ``amount_eur``). Types are compared only for formats that
    carry them (not CSV); timestamps may arrive as ISO-8601 text.
    """
    expected = spec.column_names
    found = list(schema.names())
    added = [c for c in found if c not in expected]
    removed = [c for c in expected if c not in found]
    renamed: dict[str, str] = {}
    for column in list(removed):
        aliases = spec.column(column).aliases
        match = next((a for a in added if a in aliases or column in a or a in column), None)
        if match is not None:
            renamed[column] = match
            removed.remove(column)
            added.remove(match)
    retyped: dict[str, str] = {}
    if typed:
        for name in expected:
            actual = renamed.get(name, name)
            if actual not in schema:
                continue
            want, got = _kind(spec.dtypes[name]), _kind(schema[actual])
            if got == "null" or want == got or (want == "timestamp" and got == "text"):
                continue
            retyped[name] = f"{want} -> {got}"
    return SchemaDrift(added=added, removed=removed, renamed=renamed, retyped=retyped)
