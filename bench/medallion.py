"""Medallion benchmark: landing -> bronze -> silver -> gold, ours against pandas and a floor.

    python bench/medallion.py [--rows N] [--days D] [--workdir DIR]

In one process it generates seeded landing data once with ``reference_data`` (rows/days
transactions a day, rows/200 customers, rows/5000 merchants, default bad-record and duplicate
rates, all four formats, no distribution or schema drift; reused across runs of the same config),
then times, over every day in order:

- ``ours``: exactly the per-day work of the Dagster assets built by ``factories/``, without
  Dagster and without the quality-check functions: bronze (``LandingZone.land`` and
  ``medallion.bronze.bronze_rows``), silver (``medallion.silver.to_silver`` with ``known_ids``)
  and gold (the transform of the ``labeled_transactions`` declaration), every input read as the
  IO manager reads it (``Lakehouse.scan_days`` over the input's day window) and every output
  written with ``Lakehouse.write_partition``;
- ``anchor``: a straightforward pandas implementation of the same logic, written below;
- ``floor``: read the landing files and write each layer's rows with no transform, as many
  Delta writes as ours with ``Lakehouse.write_partition``: the landing rows as bronze, again as
  silver, the records the reader rejected as quarantine, the transactions again as gold (one
  table per file format, so typed and text days never meet in one schema).

Each starts with the landing files just read (in the page cache). Both implementations must give
the same gold rows and the same silver and quarantine rows, or the benchmark exits non-zero. One
JSON line is printed per measurement.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import hmac
import json
import os
import resource
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medallion.bronze import bronze_rows
from medallion.contracts import value_checks
from medallion.derived import HISTORY, SAME_DAY, Days, DerivedTable
from medallion.landing import LINEAGE_COLUMNS, landing_files
from medallion.pseudonymize import PSEUDONYM_SUFFIX
from medallion.silver import SILVER_LINEAGE, known_ids, named, to_silver
from medallion.sources import EARLIEST_EVENT, TIMESTAMP, SourceTable
from reference_data import GeneratorConfig, generate
from registry import discover
from resources.lakehouse import PARTITION_COLUMN, Lakehouse
from resources.landing_zone import LandingZone

KEY = b"bench-pseudonymization-key"
REGISTRY = discover()
GOLD: DerivedTable = REGISTRY.derived["labeled_transactions"]


def in_dependency_order(sources: dict[str, SourceTable]) -> list[SourceTable]:
    """Every table after the tables it references, as Dagster runs their silver assets."""
    ordered: list[SourceTable] = []

    def visit(spec: SourceTable) -> None:
        for ref in spec.references:
            visit(sources[ref.table])
        if spec not in ordered:
            ordered.append(spec)

    for spec in sources.values():
        visit(spec)
    return ordered


TABLES = in_dependency_order(REGISTRY.sources)


@dataclass
class Timings:
    """Seconds per stage, summed over days; ``writes`` is the part spent writing Delta tables."""

    bronze: float = 0.0
    silver: float = 0.0
    gold: float = 0.0
    writes: float = 0.0
    days: list[float] = field(default_factory=list)

    def timed(self, write: Callable[..., object]) -> Callable[..., None]:
        """``write``, adding the seconds each call takes to ``writes``."""

        def timed_write(*args: object) -> None:
            started = time.perf_counter()
            write(*args)
            self.writes += time.perf_counter() - started

        return timed_write

    @property
    def total(self) -> float:
        return self.bronze + self.silver + self.gold


class Clock:
    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return elapsed


# --------------------------------------------------------------------------------------------
# Landing data
# --------------------------------------------------------------------------------------------


def landing_config(rows: int, days: int) -> GeneratorConfig:
    """``rows`` transactions over ``days``; no distribution or schema drift; default defects."""
    return GeneratorConfig(
        days=days,
        transactions_per_day=max(1, rows // days),
        customers=max(1, rows // 200),
        merchants=max(1, rows // 5000),
        drift_start_day=None,
        extra_column_day=None,
        renamed_column_day=None,
    )


def ensure_landing(config: GeneratorConfig, workdir: Path) -> tuple[Path, float | None]:
    """The landing folder for ``config``, generated unless a finished copy is already there."""
    description = asdict(config) | {"start": config.start.isoformat()}
    tag = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:12]
    root = workdir / f"landing-{tag}"
    marker = root / "_generated.json"
    description = json.loads(json.dumps(description))  # as the marker file reads back
    if marker.is_file() and json.loads(marker.read_text()) == description:
        return root, None
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    generate(config, root)
    marker.write_text(json.dumps(description, sort_keys=True))
    return root, time.perf_counter() - started


def warm(landing: Path) -> None:
    """Read every landing file once, untimed, right before a contender runs: whoever read them
    first would otherwise pay the disk for the others (idle pages do not stay cached here)."""
    for path in sorted(landing.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                while handle.read(1 << 24):
                    pass


def day_keys(config: GeneratorConfig) -> list[str]:
    return [(config.start + timedelta(days=i)).isoformat() for i in range(config.days)]


def day_files(landing: Path, table: str, day: str) -> list[Path]:
    return [Path(p) for p in landing_files(landing, table, date.fromisoformat(day))]


# --------------------------------------------------------------------------------------------
# Ours: the per-day work of the assets factories/sources.py and factories/derived.py build
# --------------------------------------------------------------------------------------------


Write = Callable[[str, object, str], None]
"""(table, frame, day): replace one day of a table."""
Read = Callable[[str, Days], pl.LazyFrame]
"""(table, days): an input as the IO manager hands it to an asset for the day being built."""


def window(days: Days, day: str, start: str) -> tuple[date, date]:
    """The first and last day of an input that ``day`` reads, as the asset's partition mapping
    maps it: days before ``start``, the first partition, do not exist."""
    on, first = date.fromisoformat(day), date.fromisoformat(start)
    if days.before is not None:
        first = max(first, on - timedelta(days=days.before))
    return first, on + timedelta(days=days.after)


def reader(lakehouse: Lakehouse, day: str, start: str) -> Read:
    """Inputs of ``day`` as ``LakehouseIOManager.load_input`` reads them: the input's window of
    days, pinned to the table's current version."""

    def read(table: str, days: Days) -> pl.LazyFrame:
        scanned = lakehouse.scan_days(table, *window(days, day, start))
        if scanned is None:
            raise RuntimeError(f"{table} has never been written")
        return scanned[0]

    return read


def ours_bronze(write: Write, zone: LandingZone, spec: SourceTable, day: str, run_id: str) -> None:
    files = {zone.relative(f.path): f for f in zone.land(spec.name, day)}
    rows = bronze_rows(spec, files, ingested_at=datetime.now(UTC), run_id=run_id)
    write(f"bronze/{spec.name}", rows, day)


def ours_silver(write: Write, read: Read, spec: SourceTable, day: str) -> None:
    rows = read(f"bronze/{spec.name}", SAME_DAY).collect()
    result = to_silver(
        rows,
        spec,
        KEY,
        day=date.fromisoformat(day),
        known={
            ref.column: known_ids(
                read(f"silver/{ref.table}", HISTORY),
                read(f"silver/{ref.table}_quarantine", HISTORY),
                key=REGISTRY.sources[ref.table].primary_key,
                among=named(rows, spec, ref.column),
            )
            for ref in spec.references
        },
    )
    write(f"silver/{spec.name}_quarantine", result.quarantine, day)
    write(f"silver/{spec.name}", result.silver, day)


def ours_gold(write: Write, read: Read, day: str) -> None:
    inputs = {name: read(i.table, i.days) for name, i in GOLD.inputs.items()}
    write(GOLD.table, GOLD.transform(**inputs), day)


def run_ours(root: Path, landing: Path, days: list[str]) -> Timings:
    lakehouse = Lakehouse(root_uri=str(root))
    zone = LandingZone(root=str(landing))
    timings = Timings()
    write = timings.timed(lakehouse.write_partition)
    for day in days:
        run_id = str(uuid.uuid4())
        read = reader(lakehouse, day, start=days[0])
        clock = Clock()
        for spec in TABLES:
            ours_bronze(write, zone, spec, day, run_id)
        timings.bronze += (bronze := clock.lap())
        for spec in TABLES:
            ours_silver(write, read, spec, day)
        timings.silver += (silver := clock.lap())
        ours_gold(write, read, day)
        timings.gold += (gold := clock.lap())
        timings.days.append(bronze + silver + gold)
    return timings


# --------------------------------------------------------------------------------------------
# Anchor: the same logic in plain pandas
# --------------------------------------------------------------------------------------------


def pd_write_partition(root: Path, table: str, frame: pd.DataFrame, day: str) -> None:
    """Predicate overwrite of one day, as Lakehouse.write_partition does."""
    data = pa.Table.from_pandas(frame.assign(**{PARTITION_COLUMN: day}), preserve_index=False)
    # A column pandas holds only Nones of (no failures today, say) has no type: give it one.
    for i, column in enumerate(data.schema):
        if pa.types.is_null(column.type):
            kind = pa.list_(pa.string()) if column.name == "failed_checks" else pa.string()
            data = data.set_column(i, column.name, data.column(i).cast(kind))
    write_deltalake(
        str(root / table),
        data,
        mode="overwrite",
        predicate=f"{PARTITION_COLUMN} = '{day}'",
        partition_by=[PARTITION_COLUMN],
        schema_mode="merge",
    )


def pd_read_table(root: Path, table: str, filters: list | None = None) -> pd.DataFrame:
    return DeltaTable(str(root / table)).to_pandas(filters=filters)


def pd_read_landing(path: Path) -> pd.DataFrame:
    fmt = path.suffix.lstrip(".")
    if fmt == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=False, convert_dates=False, precise_float=True)
    if fmt == "avro":
        with path.open("rb") as handle:
            return pd.DataFrame.from_records(list(fastavro.reader(handle)))
    raise ValueError(f"unsupported landing format {fmt!r}")


def pd_as_text(values: pd.Series) -> pd.Series:
    """Every value as str, nulls as None."""
    return values.astype(str).where(values.notna(), None)


def pd_bronze(write: Write, landing: Path, spec: SourceTable, day: str, run_id: str) -> None:
    ingested_at = pd.Timestamp.now(tz="UTC")
    frames = []
    for path in day_files(landing, spec.name, day):
        raw = pd_read_landing(path)
        frame = pd.DataFrame({c: pd_as_text(raw[c]) for c in raw.columns}, index=raw.index)
        frame["_source_file"] = str(path.relative_to(landing))
        frame["_source_format"] = path.suffix.lstrip(".")
        frame["_row_number"] = np.arange(len(frame), dtype=np.int64)
        frame["_ingested_at"] = ingested_at
        frame["_run_id"] = run_id
        frame["_error"] = frame["_raw"] = None
        frames.append(frame)
    if frames:
        bronze = pd.concat(frames, ignore_index=True)
        extra = [c for c in bronze.columns if c not in spec.column_names]
        bronze = bronze.reindex(columns=[*spec.column_names, *extra])
    else:
        bronze = pd.DataFrame(
            {c: pd.Series(dtype=object) for c in spec.column_names}
            | {
                "_source_file": pd.Series(dtype=object),
                "_source_format": pd.Series(dtype=object),
                "_row_number": pd.Series(dtype=np.int64),
                "_ingested_at": pd.Series(dtype="datetime64[us, UTC]"),
                "_run_id": pd.Series(dtype=object),
                "_error": pd.Series(dtype=object),
                "_raw": pd.Series(dtype=object),
            }
        )
    write(f"bronze/{spec.name}", bronze, day)


def pd_hmac(values: pd.Series) -> pd.Series:
    def digest(value: str) -> str:
        return hmac.new(KEY, value.strip().lower().encode(), hashlib.sha256).hexdigest()

    return values.map(digest, na_action="ignore")


def pd_pseudonymize(frame: pd.DataFrame, spec: SourceTable) -> pd.DataFrame:
    frame = frame.copy()
    for c in spec.pii:
        if c in frame.columns:
            frame[c] = pd_hmac(frame[c])
    return frame.rename(columns={c: c + PSEUDONYM_SUFFIX for c in spec.pii})


RULE_MASKS: dict[str, Callable[[pd.Series, dict], pd.Series]] = {
    "isin": lambda s, st: s.isin(st["allowed_values"]),
    "str_matches": lambda s, st: s.str.contains(st["pattern"], regex=True),
    "greater_than_or_equal_to": lambda s, st: s >= st["min_value"],
    "less_than_or_equal_to": lambda s, st: s <= st["max_value"],
}
"""How pandas evaluates each rule a ``Column`` declares (``medallion.contracts.value_checks``)."""


def pd_silver(write: Write, root: Path, spec: SourceTable, day: str) -> None:
    bronze = pd_read_table(root, f"bronze/{spec.name}", [(PARTITION_COLUMN, "=", day)])
    bronze = bronze.drop(columns=PARTITION_COLUMN).reset_index(drop=True)

    # Parse: coalesce aliases, strip, type; a value that does not parse is a failure.
    typed = pd.DataFrame(index=bronze.index)
    failures = []  # (rows, column, check)
    for column in spec.columns:
        name = column.name
        raw = pd.Series(None, index=bronze.index, dtype=object)
        for source in (name, *column.aliases):
            if source in bronze.columns:
                raw = raw.fillna(bronze[source])
        text = raw.str.strip()
        if column.dtype == TIMESTAMP:
            value = pd.to_datetime(text, format="%Y-%m-%dT%H:%M:%S.%f", errors="coerce")
            value = value.fillna(
                pd.to_datetime(text, format="%Y-%m-%d %H:%M:%S.%f", errors="coerce")
            )
        elif column.dtype == pl.Float64:
            value = pd.to_numeric(text, errors="coerce").astype("float64")
        else:
            value = text
        typed[name] = value
        unparseable = text.notna() & value.isna()
        failures.append((bronze.index[unparseable], name, "unparseable"))
        if column.required:
            failures.append((bronze.index[value.isna() & ~unparseable], name, "not_nullable"))
        for check in value_checks(column):
            present = value.notna()
            ok = RULE_MASKS[check.name](value[present], check.statistics)
            failures.append((ok.index[~ok.astype(bool)], name, check.error))

        if name == spec.event_time:
            tolerance, end = spec.event_time_tolerance, pd.Timestamp(day) + pd.Timedelta(days=1)
            if tolerance is None:
                low, high = pd.Timestamp(EARLIEST_EVENT), end
                check = f"before {EARLIEST_EVENT} or after its landing day"
            else:
                low, high = pd.Timestamp(day) - tolerance, end + tolerance
                check = f"outside its landing day (tolerance {tolerance})"
            outside = value.notna() & ((value < low) | (value >= high))
            failures.append((bronze.index[outside], name, check))
    for ref in spec.references:
        key = REGISTRY.sources[ref.table].primary_key
        history = [(PARTITION_COLUMN, "<=", day)]
        known = set(pd_read_table(root, f"silver/{ref.table}", history)[key])
        known |= set(pd_read_table(root, f"silver/{ref.table}_quarantine", history)["key"])
        orphan = typed[ref.column].notna() & ~typed[ref.column].isin(known)
        failures.append((bronze.index[orphan], ref.column, f"references no known {ref.table}"))
    unreadable = bronze["_error"].notna()
    failures.append((bronze.index[unreadable], "record", "unreadable"))
    failed_rows = pd.Index(np.unique(np.concatenate([rows for rows, _, _ in failures])))
    candidates = typed.drop(index=failed_rows)
    repeated = candidates[candidates.duplicated(spec.unique_key, keep=False)]
    versions = (
        repeated.astype(str)
        .apply(tuple, axis=1)
        .groupby([repeated[k] for k in spec.unique_key])
        .transform("nunique")
    )
    conflicts = versions.index[versions > 1]
    failures.append((conflicts, spec.primary_key, "conflicting duplicate"))

    failed = pd.concat(
        [pd.DataFrame({"row": rows, "column": c, "check": k}) for rows, c, k in failures],
        ignore_index=True,
    )
    failed["label"] = failed["column"] + ": " + failed["check"]
    failed_checks = (
        failed.sort_values(["row", "column", "check"]).groupby("row", sort=True)["label"].agg(list)
    )

    # Quarantine: the failed rows with their original values (PII pseudonymized) as JSON.
    business = [c for c in bronze.columns if c not in LINEAGE_COLUMNS]
    bad = bronze.loc[failed_checks.index]
    originals = bad[business].copy()
    for column in spec.unsafe_columns(business):  # as received: the name kept, the value hashed
        originals[column] = pd_hmac(originals[column])
    quarantine = pd.DataFrame(
        {
            "source_table": spec.name,
            "key": bad[spec.primary_key].str.strip(),
            "failed_checks": failed_checks.to_numpy(),
            "error": bad["_error"],
            "original": pd.Series(
                [
                    json.dumps(row, separators=(",", ":"))
                    for row in originals.astype(object)
                    .where(originals.notna(), None)
                    .to_dict(orient="records")
                ],
                index=bad.index,
                dtype=object,
            ),
        },
        index=bad.index,
    ).join(bad[list(SILVER_LINEAGE)])

    # Silver: valid rows, first of each unique key in landing order, PII pseudonymized.
    valid = typed.drop(index=failed_checks.index).join(bronze[list(SILVER_LINEAGE)])
    silver = valid.sort_values(["_source_file", "_row_number"], kind="stable").drop_duplicates(
        subset=spec.unique_key, keep="first"
    )
    silver = pd_pseudonymize(silver, spec)
    write(f"silver/{spec.name}", silver, day)
    write(f"silver/{spec.name}_quarantine", quarantine, day)


def pd_as_of(
    events: pd.DataFrame, versions: pd.DataFrame, *, by: str, on: str, valid_from: str
) -> pd.DataFrame:
    joined = pd.merge_asof(
        events.sort_values(on, kind="stable"),
        versions.sort_values(valid_from, kind="stable"),
        left_on=on,
        right_on=valid_from,
        by=by,
        direction="backward",
    )
    return joined.sort_values("_event_order").reset_index(drop=True)


def pd_gold(write: Write, root: Path, day: str, start: str) -> None:
    inputs = {}
    for name, read in GOLD.inputs.items():
        first, last = window(read.days, day, start)
        days = [
            (PARTITION_COLUMN, ">=", first.isoformat()),
            (PARTITION_COLUMN, "<=", last.isoformat()),
        ]
        inputs[name] = pd_read_table(root, read.table, days)
    customers, merchants = inputs["customers"], inputs["merchants"]
    transactions, chargebacks = inputs["transactions"], inputs["chargebacks"]

    profiles = customers[["customer_id", "updated_at", "country", "segment", "age_band"]].rename(
        columns={
            "updated_at": "customer_profile_valid_from",
            "country": "customer_country",
            "segment": "customer_segment",
            "age_band": "customer_age_band",
        }
    )
    merchant_versions = merchants[["merchant_id", "created_at", "category", "country"]].rename(
        columns={"category": "merchant_category", "country": "merchant_country"}
    )
    # The first chargeback's reason; fraud if any chargeback says so, known from the first that
    # does (else from the first chargeback).
    filed = chargebacks.sort_values(["reported_at", "chargeback_id"])
    labels = (
        filed.groupby("transaction_id", as_index=False)[["reason_code", "reported_at"]]
        .first()
        .rename(columns={"reason_code": "chargeback_reason"})
    )
    fraud_known = filed[filed["reason_code"] == "fraud"].groupby("transaction_id")["reported_at"]
    fraud_known = labels["transaction_id"].map(fraud_known.first())
    labels["is_fraud"] = fraud_known.notna()
    labels["label_known_at"] = fraud_known.fillna(labels.pop("reported_at"))
    columns = ["transaction_id", "event_time", "customer_id", "merchant_id", "amount"]
    events = transactions[[*columns, "channel", "device"]].copy()
    events["_event_order"] = np.arange(len(events))
    gold = pd_as_of(
        events,
        profiles,
        by="customer_id",
        on="event_time",
        valid_from="customer_profile_valid_from",
    )
    gold = pd_as_of(
        gold, merchant_versions, by="merchant_id", on="event_time", valid_from="created_at"
    )
    gold = gold.merge(labels, on="transaction_id", how="left")
    gold["is_foreign"] = gold["merchant_country"].astype("string") != gold[
        "customer_country"
    ].astype("string")
    gold["is_fraud"] = gold["is_fraud"].eq(True)  # no chargeback: NaN, no fraud
    write(GOLD.table, gold[list(GOLD.columns)], day)


def run_anchor(root: Path, landing: Path, days: list[str]) -> Timings:
    timings = Timings()
    write = timings.timed(functools.partial(pd_write_partition, root))
    for day in days:
        run_id = str(uuid.uuid4())
        clock = Clock()
        for spec in TABLES:
            pd_bronze(write, landing, spec, day, run_id)
        timings.bronze += (bronze := clock.lap())
        for spec in TABLES:
            pd_silver(write, root, spec, day)
        timings.silver += (silver := clock.lap())
        pd_gold(write, root, day, start=days[0])
        timings.gold += (gold := clock.lap())
        timings.days.append(bronze + silver + gold)
    return timings


# --------------------------------------------------------------------------------------------
# Floor: read the landing files and write each layer's rows untransformed, as often as ours
# --------------------------------------------------------------------------------------------


def run_floor(root: Path, landing: Path, days: list[str]) -> Timings:
    """The landing rows as read, written as bronze and silver, the reader's rejected records as
    quarantine and the transactions as gold: ours' writes, none of its transforms or reads.

    Rows are written with the types their file format gave them; as a column's type differs
    between formats (text in csv, a number in parquet), each format has its own tables, e.g.
    ``bronze/transactions_csv``, so no write has to merge or cast types.
    """
    lakehouse = Lakehouse(root_uri=str(root))
    zone = LandingZone(root=str(landing))
    timings = Timings()
    write = timings.timed(lakehouse.write_partition)
    for day in days:
        clock = Clock()
        landed = {spec.name: zone.land(spec.name, day) for spec in TABLES}
        by_format = {
            t: f"{t}_{'_'.join(sorted({f.format for f in files}))}" for t, files in landed.items()
        }
        rows = {t: as_one([f.frame for f in files]) for t, files in landed.items()}
        rejected = {t: as_one([f.rejected for f in files]) for t, files in landed.items()}
        for table, frame in rows.items():
            write(f"bronze/{by_format[table]}", frame, day)
        timings.bronze += (bronze := clock.lap())
        for table, frame in rows.items():
            write(f"silver/{table}_quarantine", rejected[table], day)
            write(f"silver/{by_format[table]}", frame, day)
        timings.silver += (silver := clock.lap())
        write(f"{GOLD.table}_{by_format['transactions']}", rows["transactions"], day)
        timings.gold += (gold := clock.lap())
        timings.days.append(bronze + silver + gold)
    return timings


def as_one(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


# --------------------------------------------------------------------------------------------
# Same results?
# --------------------------------------------------------------------------------------------


def read(root: Path, table: str) -> pl.DataFrame:
    return pl.read_delta(str(root / table))


def compare(ours: Path, anchor: Path) -> list[str]:
    """Differences between the two lakes; empty when they agree."""
    problems: list[str] = []
    per_day = [PARTITION_COLUMN]
    for spec in TABLES:
        for table in (f"silver/{spec.name}", f"silver/{spec.name}_quarantine"):
            a = read(ours, table).group_by(per_day).len().sort(per_day)
            b = read(anchor, table).group_by(per_day).len().sort(per_day)
            if not a.equals(b):
                problems.append(f"{table}: row counts per day differ:\n{a}\n{b}")
        # Same rows in silver: keyed by lineage, every contract column equal.
        key = ["_source_file", "_row_number"]
        a, b = read(ours, f"silver/{spec.name}"), read(anchor, f"silver/{spec.name}")
        columns = [c + PSEUDONYM_SUFFIX if c in spec.pii else c for c in spec.column_names]
        a, b = (f.select(*key, *columns).sort(key) for f in (a, b))
        b = b.cast(a.schema)
        if not a.equals(b):
            problems.append(f"silver/{spec.name}: values differ\n{diff(a, b, key)}")
        # Same quarantined rows, same failed checks, same original values.
        columns = ["_source_file", "_row_number", "failed_checks", "original"]
        a = read(ours, f"silver/{spec.name}_quarantine").select(columns).sort(key)
        b = read(anchor, f"silver/{spec.name}_quarantine").select(columns).sort(key)
        if not a.equals(b):
            problems.append(f"silver/{spec.name}_quarantine: rows differ\n{diff(a, b, key)}")

    a = read(ours, "gold/labeled_transactions").sort("transaction_id")
    b = read(anchor, "gold/labeled_transactions").sort("transaction_id")
    if a.height != b.height or not a["transaction_id"].equals(b["transaction_id"]):
        problems.append(f"gold: transaction ids differ ({a.height} ours, {b.height} pandas)")
        return problems
    b = b.select(a.columns).cast(a.schema)
    amount = (a["amount"] - b["amount"]).abs().max() or 0.0
    if amount > 1e-9 or a["amount"].null_count() != b["amount"].null_count():
        problems.append(f"gold: amounts differ by up to {amount}")
    exact = [c for c in a.columns if c != "amount"]
    if not a.select(exact).equals(b.select(exact)):
        problems.append(
            f"gold: values differ\n{diff(a.select(exact), b.select(exact), ['transaction_id'])}"
        )
    return problems


def diff(a: pl.DataFrame, b: pl.DataFrame, key: list[str]) -> str:
    columns = [c for c in a.columns if c not in key]
    joined = a.join(b, on=key, how="full", suffix="_pandas", nulls_equal=True, coalesce=True)
    differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_pandas")) for c in columns)
    return str(joined.filter(differs).head(5))


# --------------------------------------------------------------------------------------------


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="transactions in total")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/medallion-bench"))
    args = parser.parse_args(argv)

    config = landing_config(args.rows, args.days)
    args.workdir.mkdir(parents=True, exist_ok=True)
    landing, generated = ensure_landing(config, args.workdir)
    days = day_keys(config)
    rows = config.transactions_per_day * config.days
    status = f"generated in {generated:.1f}s" if generated is not None else "reused"
    print(f"landing {landing}: {status}", file=sys.stderr)

    lakes = {name: args.workdir / "lake" / name for name in ("ours", "pandas", "floor")}
    for lake in lakes.values():
        shutil.rmtree(lake, ignore_errors=True)

    load_before = os.getloadavg()[0]
    warm(landing)
    ours = run_ours(lakes["ours"], landing, days)
    warm(landing)
    anchor = run_anchor(lakes["pandas"], landing, days)
    warm(landing)
    floor = run_floor(lakes["floor"], landing, days)
    load_after = os.getloadavg()[0]

    problems = compare(lakes["ours"], lakes["pandas"])
    common = {"bench": "medallion", "rows": rows, "days": args.days}
    emit(
        common
        | {
            "stage": "bronze_silver_gold",
            "seconds": round(ours.total, 3),
            "rows_per_s": round(rows / ours.total),
            "anchor": "pandas",
            "anchor_seconds": round(anchor.total, 3),
            "ratio": round(anchor.total / ours.total, 2),
            # Time in Delta writes (Lakehouse.write_partition / write_deltalake), and the ratio
            # of everything else.
            "write_seconds": round(ours.writes, 3),
            "anchor_write_seconds": round(anchor.writes, 3),
            "ratio_without_writes": round(
                (anchor.total - anchor.writes) / (ours.total - ours.writes), 2
            ),
            "same_results": not problems,
            "load_avg": [round(load_before, 2), round(load_after, 2)],
            "max_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
    )
    for stage in ("bronze", "silver", "gold"):
        mine, theirs = getattr(ours, stage), getattr(anchor, stage)
        emit(
            common
            | {
                "stage": stage,
                "seconds": round(mine, 3),
                "rows_per_s": round(rows / mine),
                "anchor": "pandas",
                "anchor_seconds": round(theirs, 3),
                "ratio": round(theirs / mine, 2),
            }
        )
    emit(
        common
        | {
            "stage": "floor",
            "seconds": round(floor.total, 3),
            "rows_per_s": round(rows / floor.total),
            "anchor": "floor",
            "write_seconds": round(floor.writes, 3),
            "ours_seconds": round(ours.total, 3),
            "ours_over_floor": round(ours.total / floor.total, 2),
        }
    )
    for problem in problems:
        print(f"MISMATCH {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
