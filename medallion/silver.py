"""Bronze rows to silver: typed, validated, deduplicated and pseudonymized.

Nothing is lost on the way: every bronze row ends up exactly once as a silver row, a quarantined
row (with the checks it failed and its original values) or a removed duplicate, so
``bronze = silver + quarantined + duplicates`` holds for every partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import pandera.errors
import polars as pl

from medallion.contracts import landing_contract
from medallion.landing import LINEAGE_COLUMNS
from medallion.pseudonymize import keyed_hash, pseudonymize
from medallion.tables import EARLIEST_EVENT, TIMESTAMP, TableSpec

ROW = "_bronze_row"
ERROR = "_error"
RAW = "_raw"
"""Bronze lineage of a record (or whole file) the landing reader could not read, and its text."""
TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")
_NO_FAILURES = pl.DataFrame(schema={ROW: pl.Int64, "column": pl.String, "check": pl.String})
SILVER_LINEAGE = ("_source_file", "_row_number", "_ingested_at", "_run_id")
QUARANTINE_SCHEMA = pl.Schema(
    {
        "source_table": pl.String(),
        "key": pl.String(),
        "failed_checks": pl.List(pl.String()),
        "error": pl.String(),
        "original": pl.String(),
        "_source_file": pl.String(),
        "_row_number": pl.Int64(),
        "_ingested_at": pl.Datetime("us", "UTC"),
        "_run_id": pl.String(),
    }
)


@dataclass(frozen=True)
class KnownIds:
    """Keys of a referenced table up to the day: accepted in silver, and sitting in quarantine."""

    accepted: pl.Series
    quarantined: pl.Series


@dataclass(frozen=True)
class SilverResult:
    silver: pl.DataFrame
    quarantine: pl.DataFrame
    bronze_rows: int
    duplicates_removed: int
    quarantined_references: dict[str, int] = field(default_factory=dict)
    """Per reference column: rows kept although their entity is in quarantine (a valid fact)."""


def raw_column(bronze: pl.DataFrame, spec: TableSpec, name: str) -> pl.Expr:
    """A contract column as text, read from its name or any alias it arrived under."""
    sources = [c for c in (name, *spec.column(name).aliases) if c in bronze.columns]
    if not sources:
        return pl.lit(None, dtype=pl.String).alias(name)
    return pl.coalesce(pl.col(c).cast(pl.String) for c in sources).alias(name)


def named(bronze: pl.DataFrame, spec: TableSpec, column: str) -> pl.Series:
    """The values a reference ``column`` of this bronze day names, as silver will read them."""
    return bronze.select(raw_column(bronze, spec, column).str.strip_chars()).to_series()


def _parse(raw: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A non-timestamp column from its text, null where it does not parse.

    Timestamps try several formats, which ``_parse_timestamps`` does only where needed.
    """
    return raw.str.strip_chars().cast(dtype, strict=False)


def _to_timestamp(text: pl.Expr, fmt: str) -> pl.Expr:
    # Timestamps are nearly all distinct, so polars' cache of converted values only costs time.
    return text.str.to_datetime(fmt, time_unit="us", strict=False, cache=False)


def _parse_timestamps(typed: pl.DataFrame, raw: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """Timestamp columns parsed by the first format that fits, trying a later one only where needed.

    Coalescing every format over the whole column gives the same result, but nearly every value
    matches the first one, so each later format runs only on the values still unparsed.
    """
    first, *others = TIMESTAMP_FORMATS
    names = [c.name for c in spec.columns if c.dtype == TIMESTAMP]
    text = raw.select(pl.col(name).str.strip_chars() for name in names)
    parsed = text.select(_to_timestamp(pl.col(name), first) for name in names)
    for name in names:
        column = parsed[name]
        for fmt in others:
            missing = (column.is_null() & text[name].is_not_null()).arg_true()
            if missing.is_empty():
                break
            retry = text[name].gather(missing).to_frame().select(_to_timestamp(pl.col(name), fmt))
            column = column.scatter(missing, retry.to_series())
        typed = typed.with_columns(column)
    return typed


def parse(bronze: pl.DataFrame, spec: TableSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed rows plus one (row, column, check) per value that did not parse."""
    raw = bronze.select(pl.col(ROW), *(raw_column(bronze, spec, c.name) for c in spec.columns))
    typed = raw.select(
        pl.col(ROW),
        *(
            pl.lit(None, dtype=TIMESTAMP).alias(c.name)
            if c.dtype == TIMESTAMP
            else _parse(pl.col(c.name), c.dtype).alias(c.name)
            for c in spec.columns
        ),
    )
    typed = _parse_timestamps(typed, raw, spec)
    failures = pl.concat(
        [
            raw.filter(pl.col(c.name).is_not_null() & typed[c.name].is_null()).select(
                pl.col(ROW), pl.lit(c.name).alias("column"), pl.lit("unparseable").alias("check")
            )
            for c in spec.columns
            if c.dtype != pl.String
        ],
        how="vertical",
    )
    return typed, failures


def contract_failures(typed: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """One (row, column, check) per pandera rule a row breaks."""
    try:
        landing_contract(spec).validate(typed.drop(ROW), lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        if cases["index"].null_count():
            # Column and check only: the failure cases hold raw values, PII among them.
            whole = cases.filter(pl.col("index").is_null()).select("column", "check").unique()
            raise ValueError(f"{spec.name}: contract failed as a whole: {whole.rows()}") from errors
        # pandera's index is the row's position in ``typed``, which skips unreadable records.
        return cases.select(
            typed[ROW].gather(cases["index"].cast(pl.Int64)).alias(ROW),
            pl.col("column").cast(pl.String),
            pl.col("check").cast(pl.String),
        )
    return _NO_FAILURES


def event_time_failures(typed: pl.DataFrame, spec: TableSpec, day: date) -> pl.DataFrame:
    """One (row, column, check) per event time outside its landing day or outside sane bounds."""
    day_start = datetime.combine(day, time())
    tolerance = spec.event_time_tolerance
    if tolerance is None:
        low, high = datetime.fromisoformat(EARLIEST_EVENT), day_start + timedelta(days=1)
        check = f"before {EARLIEST_EVENT} or after its landing day"
    else:
        low, high = day_start - tolerance, day_start + timedelta(days=1) + tolerance
        check = f"outside its landing day (tolerance {tolerance})"
    at = pl.col(spec.event_time)
    return typed.filter(at.is_not_null() & ~at.is_between(low, high, closed="left")).select(
        ROW, pl.lit(spec.event_time).alias("column"), pl.lit(check).alias("check")
    )


def reference_failures(
    typed: pl.DataFrame, spec: TableSpec, known: dict[str, KnownIds]
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Orphans (the entity never arrived) as failures, and how many rows name a quarantined one."""
    failures, kept = [], {}
    for ref in spec.references:
        if ref.column not in known:
            raise ValueError(f"{spec.name}: no known ids given for reference {ref.column!r}")
        # A day names a few thousand ids; the history holds millions. Match against the few.
        named = typed[ref.column].drop_nulls().unique()
        accepted, quarantined = (
            ids.filter(ids.is_in(named.implode())).implode()
            for ids in (known[ref.column].accepted, known[ref.column].quarantined)
        )
        value = pl.col(ref.column)
        status = typed.select(
            ROW,
            value.is_not_null().alias("named"),
            value.is_in(accepted).alias("accepted"),
            value.is_in(quarantined).alias("quarantined"),
        )
        orphan = pl.col("named") & ~pl.col("accepted") & ~pl.col("quarantined")
        failures.append(
            status.filter(orphan).select(
                ROW,
                pl.lit(ref.column).alias("column"),
                pl.lit(f"references no known {ref.table}").alias("check"),
            )
        )
        kept[ref.column] = status.select(~pl.col("accepted") & pl.col("quarantined")).sum().item()
    return pl.concat([_NO_FAILURES, *failures]), kept


def conflict_failures(candidates: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """Every row of a key that arrived with different content: which version is right is unknown.

    Identical copies are no conflict; they are re-sent rows, removed as duplicates.
    """
    key = pl.struct(spec.unique_key) if len(spec.unique_key) > 1 else pl.col(spec.primary_key)
    repeated = candidates.filter(key.is_duplicated())
    versions = pl.struct(spec.column_names).hash().n_unique().over(spec.unique_key)
    return repeated.filter(versions > 1).select(
        ROW,
        pl.lit(spec.primary_key).alias("column"),
        pl.lit("conflicting duplicate").alias("check"),
    )


def to_silver(
    bronze: pl.DataFrame,
    spec: TableSpec,
    key: bytes,
    *,
    day: date,
    known: dict[str, KnownIds] | None = None,
) -> SilverResult:
    """Clean one landing day of one table; PII leaves only as keyed pseudonyms.

    ``known`` holds, per reference column of ``spec``, the ids its rows may name.
    """
    bronze = _drop_columns_of_other_days(bronze, spec)
    bronze = bronze.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    # Partitions written before bronze kept unreadable records have neither column.
    bronze = bronze.with_columns(
        pl.lit(None, pl.String).alias(c) for c in (ERROR, RAW) if c not in bronze.columns
    )
    unreadable = bronze.filter(pl.col(ERROR).is_not_null())
    readable = bronze.filter(pl.col(ERROR).is_null())
    typed, parse_failures = parse(readable, spec)
    rule_failures = contract_failures(typed, spec).join(
        parse_failures, on=[ROW, "column"], how="anti"
    )
    orphans, quarantined_references = reference_failures(typed, spec, known or {})
    failures = pl.concat(
        [parse_failures, rule_failures, event_time_failures(typed, spec, day), orphans]
    )
    candidates = typed.filter(pl.col(ROW).is_in(failures[ROW].implode()).not_())
    failures = pl.concat([failures, conflict_failures(candidates, spec)])
    failed = (
        failures.sort(ROW, "column", "check")
        .group_by(ROW, maintain_order=True)
        .agg((pl.col("column") + ": " + pl.col("check")).alias("failed_checks"))
    )
    lineage = readable.select(ROW, *SILVER_LINEAGE)
    quarantine = pl.concat(
        [
            _quarantine(readable, spec, failed, key).join(lineage, on=ROW),
            _unreadable(unreadable, spec, key),
        ],
        how="diagonal_relaxed",
    ).sort(ROW)
    # typed and lineage are both in bronze row order: a filter replaces the anti and inner join.
    valid = typed.with_columns(lineage.drop(ROW)).filter(
        pl.col(ROW).is_in(failed[ROW].implode()).not_()
    )
    first = (
        pl.col(spec.primary_key) if len(spec.unique_key) == 1 else pl.struct(spec.unique_key)
    ).is_first_distinct()
    silver = valid.sort("_source_file", "_row_number").filter(first).drop(ROW)
    silver = pseudonymize(silver, spec.pii, key)
    return SilverResult(
        silver=silver,
        quarantine=quarantine.select(QUARANTINE_SCHEMA.names()).cast(QUARANTINE_SCHEMA),
        bronze_rows=bronze.height,
        duplicates_removed=valid.height - silver.height,
        quarantined_references=quarantined_references,
    )


def _drop_columns_of_other_days(bronze: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """Bronze's merged schema carries every column any day ever had; keep this day's own."""
    foreign = [
        name
        for name in bronze.columns
        if name not in spec.column_names
        and name not in LINEAGE_COLUMNS
        and bronze[name].null_count() == bronze.height
    ]
    return bronze.drop(foreign)


def _quarantine(
    bronze: pl.DataFrame, spec: TableSpec, failed: pl.DataFrame, key: bytes
) -> pl.DataFrame:
    """Failed rows with every value as received (PII pseudonymized) as one JSON object."""
    rows = bronze.join(failed, on=ROW)
    business = [c for c in bronze.columns if c not in (ROW, *LINEAGE_COLUMNS)]
    originals = pseudonymize(
        rows.select(business), tuple(spec.unsafe_columns(business)), key, rename=False
    )
    return rows.select(
        ROW,
        "failed_checks",
        raw_column(rows, spec, spec.primary_key).str.strip_chars().alias("key"),
    ).with_columns(
        pl.lit(spec.name).alias("source_table"),
        originals.select(pl.struct(pl.all()).struct.json_encode().alias("original")).to_series(),
    )


def _unreadable(unreadable: pl.DataFrame, spec: TableSpec, key: bytes) -> pl.DataFrame:
    """Records (or whole files) the landing reader could not read, with its error and the text.

    The text of a broken line of a table holding PII may hold PII anywhere: it is pseudonymized.
    """
    original = keyed_hash(unreadable[RAW], key) if spec.pii else unreadable[RAW]
    whole_file = pl.col("_row_number").is_null()
    return unreadable.select(
        ROW,
        *SILVER_LINEAGE,
        pl.lit(spec.name).alias("source_table"),
        pl.when(whole_file)
        .then(pl.lit(["file: unreadable"]))
        .otherwise(pl.lit(["record: unreadable"]))
        .alias("failed_checks"),
        pl.col(ERROR).alias("error"),
        original.alias("original"),
    )
