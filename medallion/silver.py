"""Bronze rows to silver: typed, validated, deduplicated and pseudonymized.

Nothing is lost on the way: every bronze row ends up exactly once as a silver row, a quarantined
row (with the checks it failed and its original values) or a removed duplicate, so
``bronze = silver + quarantined + duplicates`` holds for every partition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import pandera.errors
import polars as pl

from medallion.contracts import landing_contract, value_checks
from medallion.landing import LINEAGE_COLUMNS
from medallion.pseudonymize import keyed_hash, pseudonymize
from medallion.sources import EARLIEST_EVENT, TIMESTAMP, SourceTable

ROW = "_bronze_row"
ERROR = "_error"
RAW = "_raw"
"""Bronze lineage of a record (or whole file) the landing reader could not read, and its text."""
TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")
SIX_DIGIT_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%6f"
"""The first format with exactly six fraction digits, as bronze writes a typed timestamp: polars
parses this fixed-width form about eight times faster than ``%.f``, and a value it parses reads
the same under the first format, so it is tried first and the formats then run on the rest."""
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


def known_ids(
    accepted: pl.LazyFrame, quarantined: pl.LazyFrame, key: str, among: pl.Series
) -> KnownIds:
    """The ids of ``among`` that a referenced table knows, accepted or quarantined.

    ``accepted`` is the referenced silver table and ``quarantined`` its quarantine, as far back
    as the day reaches; asking only for the ids the day names keeps millions out of memory.
    """
    wanted = among.drop_nulls().unique().implode()

    def ids(frame: pl.LazyFrame, column: str) -> pl.LazyFrame:
        if column not in frame.collect_schema():  # a quarantine written before it kept keys
            return pl.LazyFrame(schema={column: pl.String})
        return frame.select(column).filter(pl.col(column).is_in(wanted)).unique()

    # Both tables are read side by side.
    found = pl.collect_all([ids(accepted, key), ids(quarantined, "key")])
    return KnownIds(accepted=found[0].to_series(), quarantined=found[1].to_series())


def raw_column(bronze: pl.DataFrame, spec: SourceTable, name: str) -> pl.Expr:
    """A contract column as text, read from its name or any alias it arrived under."""
    sources = [c for c in (name, *spec.column(name).aliases) if c in bronze.columns]
    if not sources:
        return pl.lit(None, dtype=pl.String).alias(name)
    return pl.coalesce(pl.col(c).cast(pl.String) for c in sources).alias(name)


def named(bronze: pl.DataFrame, spec: SourceTable, column: str) -> pl.Series:
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


def _parse_timestamps(typed: pl.DataFrame, raw: pl.DataFrame, spec: SourceTable) -> pl.DataFrame:
    """Timestamp columns parsed by the first format that fits, trying a later one only where needed.

    Coalescing every format over the whole column gives the same result, but nearly every value
    matches the first one (``SIX_DIGIT_TIMESTAMP``), so each later format runs only on the values
    still unparsed.
    """
    names = [c.name for c in spec.columns if c.dtype == TIMESTAMP]
    text = raw.select(pl.col(name).str.strip_chars() for name in names)
    parsed = text.select(_to_timestamp(pl.col(name), SIX_DIGIT_TIMESTAMP) for name in names)
    for name in names:
        column = parsed[name]
        for fmt in TIMESTAMP_FORMATS:
            missing = (column.is_null() & text[name].is_not_null()).arg_true()
            if missing.is_empty():
                break
            retry = text[name].gather(missing).to_frame().select(_to_timestamp(pl.col(name), fmt))
            column = column.scatter(missing, retry.to_series())
        typed = typed.with_columns(column)
    return typed


def parse(bronze: pl.DataFrame, spec: SourceTable) -> tuple[pl.DataFrame, pl.DataFrame]:
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


def contract_failures(typed: pl.DataFrame, spec: SourceTable) -> pl.DataFrame:
    """One (row, column, check) per rule of the landing contract a row breaks, named as pandera
    names it: ``not_nullable`` for a missing required value (NaN counts as missing), else the
    rule's error, e.g. ``isin(('pos', 'online'))``.

    Each rule is evaluated as the polars expression pandera's polars backend evaluates, which
    costs a fraction of a millisecond where pandera, collecting its failure cases, costs tens; a
    rule ``_PASSES`` does not know is left to pandera.
    """
    if any(check.name not in _PASSES for c in spec.columns for check in value_checks(c)):
        return _pandera_failures(typed, spec)
    rules: list[tuple[pl.Expr, str, str]] = []
    for column in spec.columns:
        value = pl.col(column.name)
        if column.required:
            missing = value.is_null()
            if column.dtype.is_float():
                missing |= value.is_nan()
            rules.append((missing, column.name, "not_nullable"))
        for check in value_checks(column):
            broken = value.is_not_null() & ~_PASSES[check.name](value, check.statistics)
            rules.append((broken, column.name, check.error))
    broken = typed.select(ROW, *(expr.alias(f"rule_{i}") for i, (expr, _, _) in enumerate(rules)))
    return pl.concat(
        [
            _NO_FAILURES,
            *(
                broken.filter(pl.col(f"rule_{i}")).select(
                    ROW, pl.lit(column).alias("column"), pl.lit(check).alias("check")
                )
                for i, (_, column, check) in enumerate(rules)
            ),
        ]
    )


_PASSES: dict[str, Callable[[pl.Expr, dict[str, Any]], pl.Expr]] = {
    "isin": lambda value, rule: value.is_in(list(rule["allowed_values"])),
    "greater_than_or_equal_to": lambda value, rule: value >= rule["min_value"],
    "less_than_or_equal_to": lambda value, rule: value <= rule["max_value"],
    "str_matches": lambda value, rule: value.str.contains(
        rule["pattern"] if rule["pattern"].startswith("^") else f"^{rule['pattern']}"
    ),
}
"""Whether a value passes each kind of rule ``value_checks`` makes, as pandera's polars backend
decides it (nulls are not checked; the required rule reports them)."""


def _pandera_failures(typed: pl.DataFrame, spec: SourceTable) -> pl.DataFrame:
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


def event_time_failures(typed: pl.DataFrame, spec: SourceTable, day: date) -> pl.DataFrame:
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
    typed: pl.DataFrame, spec: SourceTable, known: dict[str, KnownIds]
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Orphans (the entity never arrived) as failures, and how many rows name a quarantined one."""
    failures, kept = [], {}
    for ref in spec.references:
        if ref.column not in known:
            raise ValueError(f"{spec.name}: no known ids given for reference {ref.column!r}")
        accepted, quarantined = (
            _few(ids, typed[ref.column]).implode()
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


def _few(ids: pl.Series, named: pl.Series) -> pl.Series:
    """``ids`` cut down to those ``named`` holds when there are more ids than names: a day names a
    few thousand ids, a whole history holds millions, and a lookup set of millions is slow."""
    if ids.len() <= named.len():
        return ids
    return ids.filter(ids.is_in(named.drop_nulls().unique().implode()))


def conflict_failures(candidates: pl.DataFrame, spec: SourceTable) -> pl.DataFrame:
    """Every row of a key that arrived with different content: which version is right is unknown.

    Identical copies are no conflict; they are re-sent rows, removed as duplicates.
    """
    repeated = candidates.filter(_unique_key(spec).is_duplicated())
    versions = pl.struct(spec.column_names).hash().n_unique().over(spec.unique_key)
    return repeated.filter(versions > 1).select(
        ROW,
        pl.lit(spec.primary_key).alias("column"),
        pl.lit("conflicting duplicate").alias("check"),
    )


def to_silver(
    bronze: pl.DataFrame,
    spec: SourceTable,
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
    readable = bronze if unreadable.is_empty() else bronze.filter(pl.col(ERROR).is_null())
    typed, parse_failures = parse(readable, spec)
    rule_failures = contract_failures(typed, spec).join(
        parse_failures, on=[ROW, "column"], how="anti"
    )
    orphans, quarantined_references = reference_failures(typed, spec, known or {})
    failures = pl.concat(
        [parse_failures, rule_failures, event_time_failures(typed, spec, day), orphans]
    )
    # typed and lineage are both in bronze row order: side by side, no join.
    typed = typed.with_columns(readable.select(SILVER_LINEAGE))
    # Only a key that occurs twice can conflict or repeat. Its rows (by hash of the key, so a
    # collision only adds rows) are a sliver of the day: both questions are asked of them alone.
    repeated = typed.filter(_unique_key(spec).hash().is_duplicated())
    candidates = repeated.filter(pl.col(ROW).is_in(failures[ROW].implode()).not_())
    failures = pl.concat([failures, conflict_failures(candidates, spec)])
    failed = (
        failures.sort(ROW, "column", "check")
        .group_by(ROW, maintain_order=True)
        .agg((pl.col("column") + ": " + pl.col("check")).alias("failed_checks"))
    )
    quarantine = pl.concat(
        [
            _quarantine(readable, spec, failed, key),
            _unreadable(unreadable, spec, key),
        ],
        how="diagonal_relaxed",
    ).sort(ROW)
    # The first of each unique key in landing order is kept, its later copies are duplicates.
    copies = (
        candidates.filter(pl.col(ROW).is_in(failed[ROW].implode()).not_())
        .sort("_source_file", "_row_number")
        .filter(_unique_key(spec).is_first_distinct().not_())
    )
    dropped = pl.concat([failed[ROW], copies[ROW]]).implode()
    silver = _in_landing_order(typed.filter(pl.col(ROW).is_in(dropped).not_())).drop(ROW)
    silver = pseudonymize(silver, spec.pii, key)
    return SilverResult(
        silver=silver,
        quarantine=quarantine.select(QUARANTINE_SCHEMA.names()).cast(QUARANTINE_SCHEMA),
        bronze_rows=bronze.height,
        duplicates_removed=copies.height,
        quarantined_references=quarantined_references,
    )


def _unique_key(spec: SourceTable) -> pl.Expr:
    if len(spec.unique_key) == 1:
        return pl.col(spec.primary_key)
    return pl.struct(spec.unique_key)


def _in_landing_order(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` sorted by file and row number; bronze nearly always reads back in that order, and
    checking it costs a fraction of sorting."""
    file, row = pl.col("_source_file"), pl.col("_row_number")
    follows = (file > file.shift()) | ((file == file.shift()) & (row >= row.shift()))
    known = file.is_not_null().all() & row.is_not_null().all()
    in_order = rows.select(follows.fill_null(True).all() & known).item()
    return rows if in_order else rows.sort("_source_file", "_row_number")


def _drop_columns_of_other_days(bronze: pl.DataFrame, spec: SourceTable) -> pl.DataFrame:
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
    bronze: pl.DataFrame, spec: SourceTable, failed: pl.DataFrame, key: bytes
) -> pl.DataFrame:
    """Failed rows with every value as received (PII pseudonymized) as one JSON object, and
    their lineage."""
    rows = bronze.filter(pl.col(ROW).is_in(failed[ROW].implode())).join(failed, on=ROW)
    business = [c for c in bronze.columns if c not in (ROW, *LINEAGE_COLUMNS)]
    originals = pseudonymize(
        rows.select(business), tuple(spec.unsafe_columns(business)), key, rename=False
    )
    return rows.select(
        ROW,
        "failed_checks",
        raw_column(rows, spec, spec.primary_key).str.strip_chars().alias("key"),
        *SILVER_LINEAGE,
    ).with_columns(
        pl.lit(spec.name).alias("source_table"),
        originals.select(pl.struct(pl.all()).struct.json_encode().alias("original")).to_series(),
    )


def _unreadable(unreadable: pl.DataFrame, spec: SourceTable, key: bytes) -> pl.DataFrame:
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
