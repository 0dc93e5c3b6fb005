"""Landing files to bronze rows: read any supported format, keep every value as received.

Bronze stores each business column as text, exactly as it arrived, plus lineage columns. Typing
happens in silver, where a value that does not parse is quarantined rather than lost; keeping
bronze untyped also lets files of every format and every schema version land in one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import polars as pl

from medallion.tables import FORMATS

LINEAGE_COLUMNS = ("_source_file", "_source_format", "_row_number", "_ingested_at", "_run_id")


@dataclass(frozen=True)
class LandingFile:
    path: Path
    format: str
    schema: pl.Schema
    """The file's own schema, before bronze turns every column into text."""
    frame: pl.DataFrame


def landing_files(landing_root: Path, table: str, day: date) -> list[Path]:
    """Files that arrived for ``table`` on ``day``, in a stable order."""
    folder = landing_root / table / day.isoformat()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lstrip(".") in FORMATS)


def read_landing_file(path: Path) -> LandingFile:
    fmt = path.suffix.lstrip(".")
    if fmt == "csv":
        frame = pl.read_csv(path, infer_schema=False)
    elif fmt == "parquet":
        frame = pl.read_parquet(path)
    elif fmt == "jsonl":
        frame = pl.read_ndjson(path, infer_schema_length=None)
    elif fmt == "avro":
        frame = pl.read_avro(path)
    else:
        raise ValueError(f"{path}: unsupported landing format {fmt!r}; expected one of {FORMATS}")
    return LandingFile(path=path, format=fmt, schema=frame.schema, frame=frame)


def to_bronze(
    landing: LandingFile, *, source_file: str, ingested_at: datetime, run_id: str
) -> pl.DataFrame:
    """Every column as text, in the file's order, with where and when each row came from."""
    as_text = [
        pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f")
        if dtype.is_temporal()
        else pl.col(name).cast(pl.String)
        for name, dtype in landing.schema.items()
    ]
    return landing.frame.select(as_text).with_columns(
        pl.lit(source_file).alias("_source_file"),
        pl.lit(landing.format).alias("_source_format"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_row_number"),
        pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias("_ingested_at"),
        pl.lit(run_id).alias("_run_id"),
    )
