"""How a written table and a quality outcome are described in the Dagster UI."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import polars as pl

from medallion.quality import Outcome
from resources.lakehouse import Commit

PREVIEW_ROWS = 5


def table_metadata(
    commit: Commit,
    frame: pl.DataFrame,
    *,
    preview: pl.DataFrame | None = None,
    descriptions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Version, row count, schema and a preview (``preview`` when raw rows must not be shown)."""
    shown = frame.head(PREVIEW_ROWS) if preview is None else preview
    return {
        "delta_version": commit.version,
        "dagster/uri": commit.uri,
        "dagster/table_name": commit.table,
        "dagster/row_count": commit.rows,
        "dagster/column_schema": column_schema(frame.schema, descriptions),
        "preview": table_value(shown.to_dicts(), shown.schema),
    }


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


def check_result(
    check_name: str, outcome: Outcome, *, asset_key: dg.AssetKey, blocking: bool
) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata={k: jsonable(v) for k, v in outcome.metadata.items()},
    )


def jsonable(value: Any) -> Any:
    """Metadata a person reads at a glance: samples as tables, rates rounded, mappings as JSON."""
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return table_value(value)
    if isinstance(value, (dict, list)):
        return dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))
    if isinstance(value, float):
        return round(value, 4)
    return value


def publish(
    checks: list[dg.AssetCheckResult], write: Callable[[], dg.MaterializeResult]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Write-audit-publish: the data is written only when every blocking check passed.

    The checks run on the frame in memory. When a blocking one fails, its results are still
    reported, nothing is written and the step fails naming the checks, so the partition shows
    as failed and no later run reads it (see ``factories.readiness``).
    """
    blocked = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    if blocked:
        yield from checks
        raise dg.Failure(
            description="Not published: blocking checks failed: "
            + "; ".join(f"{c.check_name} ({c.description})" for c in blocked),
            metadata={"failed_checks": [c.check_name for c in blocked]},
        )
    yield write()
    yield from checks
