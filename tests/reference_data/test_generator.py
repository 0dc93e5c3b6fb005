"""The reference data generator: reproducible, format-independent, and honest about its defects."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from assets.sources._domains import MAX_AMOUNT
from assets.sources.chargebacks import REASON_CODES
from assets.sources.merchants import CATEGORIES
from assets.sources.transactions import CHANNELS, DEVICES
from medallion.sources import FORMATS
from reference_data import GenerationSummary, GeneratorConfig, generate
from reference_data.__main__ import main
from reference_data.generator import TABLES

SMALL = GeneratorConfig(
    seed=11,
    days=10,
    customers=300,
    merchants=40,
    transactions_per_day=800,
    drift_start_day=None,
)
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f"
AMOUNTS = ("amount", "amount_eur")
REQUIRED = {t: [c.name for c in s.columns if c.required] for t, s in TABLES.items()}
_READERS = {
    ".parquet": pl.read_parquet,
    ".csv": pl.read_csv,
    ".jsonl": pl.read_ndjson,
    ".avro": pl.read_avro,
}


def read(path: Path) -> pl.DataFrame:
    return _READERS[path.suffix](path)


def normalised(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text except amounts, compared as numbers: formats differ in typing only."""
    return frame.with_columns(
        pl.col(c).cast(pl.Float64) if c in AMOUNTS else pl.col(c).cast(pl.String)
        for c in frame.columns
    )


def load(summary: GenerationSummary, table: str) -> pl.DataFrame:
    """All files of a table, amounts under `amount`, extra columns dropped, a `day` column added."""
    frames = [
        normalised(read(f.path))
        .rename({"amount_eur": "amount"}, strict=False)
        .select(TABLES[table].column_names)
        .with_columns(day=pl.lit(f.day))
        for f in summary.files
        if f.table == table
    ]
    return pl.concat(frames)


def day_file(summary: GenerationSummary, day: int, table: str = "transactions") -> Path:
    landed = summary.file(table, summary.config.start + timedelta(days=day))
    assert landed is not None
    return landed.path


def parsed(column: str) -> pl.Expr:
    return pl.col(column).str.to_datetime(TS_FORMAT, strict=False, time_unit="us")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> GenerationSummary:
    return generate(SMALL, tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def transactions(small: GenerationSummary) -> pl.DataFrame:
    """Clean, distinct payments of the small run."""
    return (
        load(small, "transactions")
        .with_columns(event=parsed("event_time"))
        .filter(
            pl.all_horizontal(pl.col(REQUIRED["transactions"]).is_not_null()),
            pl.col("event").is_not_null(),
            pl.col("amount").is_between(0, MAX_AMOUNT),
        )
        .unique(maintain_order=True)
    )


def test_same_seed_gives_identical_files_and_another_seed_does_not(
    small: GenerationSummary, tmp_path: Path
) -> None:
    again = generate(SMALL, tmp_path / "again")
    assert [f.path.name for f in again.files] == [f.path.name for f in small.files]
    for mine, theirs in zip(small.files, again.files, strict=True):
        assert read(mine.path).equals(read(theirs.path)), mine.path.name
    assert again.to_dict()["tables"] == small.to_dict()["tables"]

    other = generate(replace(SMALL, seed=SMALL.seed + 1, days=1), tmp_path / "other")
    assert not read(day_file(small, 0)).equals(read(day_file(other, 0)))


def test_content_does_not_depend_on_the_formats(tmp_path: Path) -> None:
    config = replace(SMALL, days=6, extra_column_day=2, renamed_column_day=4, drift_start_day=3)
    runs = {fmt: generate(replace(config, formats=(fmt,)), tmp_path / fmt) for fmt in FORMATS}
    reference = runs["parquet"]
    for fmt, summary in runs.items():
        assert all(f.path.suffix == f".{fmt}" for f in summary.files)
        assert [(f.table, f.day, f.rows) for f in summary.files] == [
            (f.table, f.day, f.rows) for f in reference.files
        ]
        for mine, theirs in zip(summary.files, reference.files, strict=True):
            left, right = normalised(read(mine.path)), normalised(read(theirs.path))
            assert left.equals(right), f"{fmt}: {mine.path.name}"


def test_landing_layout_rotates_formats_over_days_and_tables(small: GenerationSummary) -> None:
    tables = list(TABLES)
    for f in small.files:
        day_index = (f.day - SMALL.start).days
        fmt = FORMATS[(day_index + tables.index(f.table)) % len(FORMATS)]
        name = f"{f.table}/{f.day.isoformat()}/{f.table}-{f.day.isoformat()}.{fmt}"
        assert f.path == small.landing_dir / name
        assert f.path.exists() and f.format == fmt
        assert read(f.path).height == f.rows
    days = {f.day for f in small.files if f.table == "transactions"}
    assert days == {SMALL.start + timedelta(days=d) for d in range(SMALL.days)}
    assert json.loads(json.dumps(small.to_dict()))["transactions"] == 8_000


def test_day_zero_holds_every_customer_and_merchant(small: GenerationSummary) -> None:
    customers = load(small, "customers")
    first = customers.filter(pl.col("day") == SMALL.start)
    assert first["customer_id"].drop_nulls().n_unique() >= SMALL.customers - 5
    times = first.filter(parsed("updated_at").is_not_null())["updated_at"]
    assert set(times) == {"2024-01-01T00:00:00.000000"}
    later = customers.filter(pl.col("day") > SMALL.start)
    assert 0 < later.height < 0.05 * SMALL.customers * SMALL.days
    assert later["updated_at"].str.starts_with("2024-01-01").sum() == 0

    cards = first["card_number"].drop_nulls()
    assert cards.str.len_chars().eq(16).all()
    assert all(_luhn_valid(card) for card in cards)
    assert first["email"].drop_nulls().str.contains(r"^[a-z]+\.[a-z]+\d+@example\.").all()

    merchants = load(small, "merchants").filter(pl.col("day") == SMALL.start)
    assert merchants.height == SMALL.merchants
    assert set(merchants["created_at"]) == {"2024-01-01T00:00:00.000000"}
    assert set(merchants["category"]) <= set(CATEGORIES)
    everyday = merchants["category"].is_in(["grocery", "restaurants", "fuel"]).mean()
    assert everyday > 0.4


def _luhn_valid(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    doubled = [d * 2 - 9 if d * 2 > 9 else d * 2 for d in digits[1::2]]
    return (sum(digits[0::2]) + sum(doubled)) % 10 == 0


def test_transactions_are_plausible_payments(
    small: GenerationSummary, transactions: pl.DataFrame
) -> None:
    assert transactions["transaction_id"].str.contains(r"^T\d{10}$").all()
    assert transactions["currency"].unique().to_list() == ["EUR"]
    assert set(transactions["channel"]) <= set(CHANNELS)
    assert set(transactions["device"].drop_nulls()) <= set(DEVICES)
    card_present = transactions.filter(pl.col("channel") != "online")
    assert card_present["device"].eq("terminal").all()
    online = transactions.filter(pl.col("channel") == "online")
    assert set(online["device"].drop_nulls()) == {"mobile", "desktop"}
    cents = (transactions["amount"] * 100).round(6)
    assert (cents == cents.round(0)).all()
    assert (transactions["event"].dt.date() == transactions["day"]).all()
    night = transactions["event"].dt.hour().is_between(1, 4).mean()
    assert night < 0.06

    customers = load(small, "customers").with_columns(first=parsed("updated_at"))
    first_seen = customers.group_by("customer_id").agg(
        pl.col("first").min(), bad=pl.col("first").null_count()
    )
    joined = transactions.join(first_seen, on="customer_id", how="left")
    # A customer whose profile rows are bad records has no known first profile.
    known = joined.filter(pl.col("bad") == 0)
    assert known.height > 0.97 * joined.height
    assert (known["first"] <= known["event"]).all()
    merchants = load(small, "merchants").with_columns(created=parsed("created_at"))
    joined = transactions.join(merchants, on="merchant_id", how="left", suffix="_m")
    assert (joined["created"] <= joined["event"]).all()


def test_fraud_rate_and_late_chargebacks(tmp_path: Path) -> None:
    summary = generate(replace(SMALL, days=30), tmp_path)
    assert 0.005 <= summary.fraud_rate <= 0.02
    assert summary.fraud_transactions > 0 and summary.chargebacks_pending > 0

    transactions = load(summary, "transactions").with_columns(event=parsed("event_time"))
    chargebacks = load(summary, "chargebacks").with_columns(reported=parsed("reported_at"))
    clean = chargebacks.filter(
        pl.all_horizontal(pl.all().is_not_null()), pl.col("amount").is_between(0, MAX_AMOUNT)
    ).unique()
    assert clean.height > 80
    assert clean["chargeback_id"].str.contains(r"^CB\d{9}$").all()
    assert set(clean["reason_code"]) <= set(REASON_CODES)
    fraud = clean.filter(pl.col("reason_code") == "fraud").height
    assert 0.8 * fraud < clean.height and fraud <= summary.fraud_transactions

    paid = transactions.filter(pl.col("event").is_not_null()).unique("transaction_id")
    joined = clean.join(paid, on="transaction_id", how="inner", suffix="_tx")
    assert joined.height >= clean.height - 5  # a disputed payment may itself be a bad record
    delay = joined["reported"] - joined["event"]
    assert (delay >= timedelta(days=1)).all() and (delay <= timedelta(days=45)).all()
    assert (joined["reported"] > joined["event"]).all()
    assert (joined["day"] == joined["reported"].dt.date()).all()
    matching = joined.filter(pl.col("amount_tx").is_between(0, MAX_AMOUNT))
    assert (matching["amount"] == matching["amount_tx"]).all()


def test_bad_records_and_duplicates_are_what_a_reader_finds(tmp_path: Path) -> None:
    config = replace(SMALL, days=8, bad_record_rate=0.05, duplicate_rate=0.02, drift_start_day=2)
    summary = generate(config, tmp_path)
    found_any = dict.fromkeys(("null_required", "negative_amount", "absurd_amount"), 0)
    for f in summary.files:
        spec = TABLES[f.table]
        frame = read(f.path).rename({"amount_eur": "amount"}, strict=False)
        found = {
            "null_required": frame.select(
                pl.any_horizontal(pl.col(REQUIRED[f.table]).is_null()).sum()
            ),
            "bad_timestamp": frame.select(
                (pl.col(spec.event_time).is_not_null() & parsed(spec.event_time).is_null()).sum()
            ),
        }
        if "amount" in frame.columns:
            found["negative_amount"] = frame.select((pl.col("amount") < 0).sum())
            found["absurd_amount"] = frame.select((pl.col("amount") > MAX_AMOUNT).sum())
        found = {kind: count.item() for kind, count in found.items()}
        if f.table == "merchants":
            assert f.bad_records == {} and sum(found.values()) == 0
        else:
            assert f.bad_records == {k: found[k] for k in f.bad_records}, f.path.name
        assert f.duplicates == frame.height - frame.unique().height, f.path.name
        if f.duplicates:
            resent = frame.filter(frame.is_duplicated())[spec.primary_key]
            assert resent.is_not_null().all()
        for kind in found_any:
            found_any[kind] += f.bad_records.get(kind, 0)
    assert all(count > 0 for count in found_any.values())
    totals = summary.table_totals("transactions")
    assert totals["duplicates"] > 0 and sum(totals["bad_records"].values()) > 0


def test_schema_drift_only_on_its_day(tmp_path: Path) -> None:
    config = replace(SMALL, days=6, extra_column_day=2, renamed_column_day=4)
    summary = generate(config, tmp_path / "drift")
    for f in (f for f in summary.files if f.table == "transactions"):
        columns = read(f.path).columns
        day = (f.day - config.start).days
        assert ("promo_code" in columns) == (day == 2)
        assert ("amount_eur" in columns) == (day == 4) != ("amount" in columns)
        assert f.columns == tuple(columns)
    promo = read(day_file(summary, 2))["promo_code"]
    assert 0 < promo.null_count() < promo.len() and promo.drop_nulls().str.len_chars().min() > 0

    plain = generate(replace(config, renamed_column_day=None), tmp_path / "plain")
    renamed = read(day_file(summary, 4))["amount_eur"]
    original = read(day_file(plain, 4))["amount"]
    assert (
        normalised(renamed.to_frame())
        .to_series()
        .equals(normalised(original.to_frame()).to_series(), check_names=False)
    )

    short = generate(replace(config, days=2), tmp_path / "short")
    for f in short.files:
        assert not {"promo_code", "amount_eur"} & set(read(f.path).columns)


def test_drift_raises_amounts_and_onboards_digital_merchants(tmp_path: Path) -> None:
    config = replace(
        SMALL, days=8, transactions_per_day=2_000, drift_start_day=4, bad_record_rate=0.0
    )
    summary = generate(config, tmp_path)
    transactions = load(summary, "transactions").unique()
    drift_day = config.start + timedelta(days=4)
    before = transactions.filter(pl.col("day") < drift_day)["amount"]
    after = transactions.filter(pl.col("day") >= drift_day)["amount"]
    assert after.mean() > 1.25 * before.mean()
    assert after.median() > before.median()
    assert 0.005 <= summary.fraud_rate <= 0.02

    merchants = load(summary, "merchants")
    onboarded = merchants.filter(pl.col("day") == drift_day)
    assert onboarded.height >= math.ceil(0.2 * config.merchants)
    digital = onboarded["category"].is_in(["digital_goods", "gaming"]).mean()
    assert digital > 0.6
    to_new = transactions.filter(
        pl.col("day") >= drift_day, pl.col("merchant_id").is_in(onboarded["merchant_id"].to_list())
    )
    assert to_new.height > 0.2 * after.len()


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="formats"):
        GeneratorConfig(formats=("xlsx",))
    with pytest.raises(ValueError, match="days"):
        GeneratorConfig(days=0)
    with pytest.raises(ValueError, match="bad_record_rate"):
        GeneratorConfig(bad_record_rate=1.5)


def test_cli_writes_the_landing_zone_and_prints_one_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), "--days", "3", "--customers", "50", "--merchants", "10"]
    argv += ["--transactions-per-day", "200", "--formats", "csv,jsonl", "--drift-start-day", "1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    printed = json.loads(lines[0])
    assert printed["transactions"] == 600 and printed["config"]["drift_start_day"] == 1
    assert printed["config"]["start"] == date(2024, 1, 1).isoformat()
    written = sorted(p.suffix for p in tmp_path.rglob("*.*"))
    assert set(written) == {".csv", ".jsonl"}
    assert printed["tables"]["transactions"]["files"] == 3
