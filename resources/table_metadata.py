"""How a table reads in the Dagster UI: its version, schema with readable types, and a preview."""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl
import polars.selectors as cs

from resources.lakehouse import DeltaCommit

PREVIEW_ROWS = 5


def table_metadata(
    commit: DeltaCommit,
    frame: pl.DataFrame,
    *,
    preview: bool = True,
    descriptions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Version, row count, schema and (unless the rows must not be shown) a preview."""
    metadata: dict[str, Any] = {
        "delta_version": commit.version,
        "dagster/uri": commit.uri,
        "dagster/table_name": commit.table,
        "dagster/row_count": commit.rows,
        "dagster/column_schema": column_schema(frame.schema, descriptions),
    }
    if preview:  # bytes (a serialized profile) read as nothing a person could use
        metadata["preview"] = frame_value(frame.head(PREVIEW_ROWS).select(~cs.binary()))
    return metadata


def column_schema(schema: pl.Schema, descriptions: dict[str, str] | None = None) -> dg.TableSchema:
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, type_name(dtype), description=descriptions.get(name))
            for name, dtype in schema.items()
        ]
    )


def type_name(dtype: pl.DataType) -> str:
    """A type as a person reads it: ``timestamp (us, UTC)``, not polars' ``Datetime(...)``."""
    if isinstance(dtype, pl.Datetime):
        return f"timestamp ({', '.join(filter(None, (dtype.time_unit, dtype.time_zone)))})"
    if isinstance(dtype, pl.List):
        return f"list of {type_name(dtype.inner)}"
    return str(dtype).lower()


def frame_value(frame: pl.DataFrame) -> dg.MetadataValue:
    return table_value(frame.to_dicts(), frame.schema)


def table_value(rows: list[dict[str, Any]], schema: pl.Schema | None = None) -> dg.MetadataValue:
    """Rows as a table the UI draws: whole columns, no wrapping, lists joined, JSON unescaped."""
    names = list(schema) if schema is not None else list(dict.fromkeys(k for r in rows for k in r))
    columns = [
        dg.TableColumn(name, type_name(schema[name]) if schema is not None else "string")
        for name in names
    ]
    records = [dg.TableRecord({name: _cell(row.get(name)) for name in names}) for row in rows]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)
