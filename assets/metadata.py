"""How a written table and a quality outcome are described in the Dagster UI."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import dagster as dg
import polars as pl

from medallion.quality import Outcome
from resources.lakehouse import Commit

PREVIEW_ROWS = 5


def table_metadata(
    commit: Commit, frame: pl.DataFrame, *, hidden: Iterable[str] = ()
) -> dict[str, Any]:
    """Version, row count, schema and a preview; ``hidden`` columns (raw PII) are not shown."""
    shown = frame.drop([c for c in hidden if c in frame.columns])
    with pl.Config(
        tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True
    ):
        preview = str(shown.head(PREVIEW_ROWS))
    return {
        "delta_version": commit.version,
        "dagster/uri": commit.uri,
        "dagster/table_name": commit.table,
        "dagster/row_count": commit.rows,
        "dagster/column_schema": column_schema(frame.schema),
        "preview": dg.MetadataValue.md(preview),
    }


def column_schema(schema: pl.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
    )


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
    """Metadata values as JSON: samples hold timestamps and lists."""
    if isinstance(value, (dict, list)):
        return dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))
    return value
