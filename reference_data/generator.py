"""Synthetic card-payment landing data with known fraud, late labels, bad records and drift.

The platform needs data whose problems are known in advance: fraud that only shows through
chargebacks days or weeks later, malformed rows, re-sent rows, schema drift and a distribution
shift. This module writes such data into the landing layout of `medallion.tables` and reports
exactly what it injected, so bronze, silver and the models can be tested against ground truth.

Every random draw comes from a generator seeded by (seed, stream, day, ...), never from the
formats or from the order files are written in, so the same config always gives the same rows and
the file format changes only the encoding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from assets.sources._domains import COUNTRIES, MAX_AMOUNT
from assets.sources.chargebacks import CHARGEBACKS, REASON_CODES
from assets.sources.customers import AGE_BANDS, CUSTOMERS, SEGMENTS
from assets.sources.merchants import CATEGORIES, MERCHANTS
from assets.sources.transactions import CHANNELS, CURRENCIES, DEVICES, TRANSACTIONS
from medallion.landing import DELIVERED_MARKER
from medallion.sources import FORMATS, SourceTable

TABLES: dict[str, SourceTable] = {
    spec.name: spec for spec in (CUSTOMERS, MERCHANTS, TRANSACTIONS, CHARGEBACKS)
}
"""The tables this generator writes; other declared source tables are none of its business."""

BAD_RECORD_KINDS = ("null_required", "negative_amount", "absurd_amount", "bad_timestamp")
"""Kinds of bad records, as counted in `FileSummary.bad_records`."""

_DEFECT_KINDS: dict[str, tuple[str, ...]] = {
    CUSTOMERS.name: ("null_required", "bad_timestamp"),
    MERCHANTS.name: (),
    TRANSACTIONS.name: BAD_RECORD_KINDS,
    CHARGEBACKS.name: BAD_RECORD_KINDS,
}

_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
_SECOND_US = 1_000_000
_EPOCH = date(1970, 1, 1)
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f"

# Independent random streams: adding draws to one never shifts the others.
_MERCHANT_STREAM = 1
_CUSTOMER_STREAM = 2
_TRANSACTION_STREAM = 3
_CHARGEBACK_STREAM = 4
_DEFECT_STREAM = 5

_WRITERS = {
    "parquet": pl.DataFrame.write_parquet,
    "csv": pl.DataFrame.write_csv,
    "jsonl": pl.DataFrame.write_ndjson,
    "avro": pl.DataFrame.write_avro,
}


class _Category(NamedTuple):
    merchant_share: float
    traffic: float  # relative payments per merchant
    median_amount: float
    amount_sigma: float
    online_share: float
    contactless_share: float  # of the card-present payments
    foreign_share: float  # of the merchants


_CATEGORY = {
    "grocery": _Category(0.26, 2.0, 32.0, 0.65, 0.05, 0.65, 0.01),
    "fuel": _Category(0.14, 1.6, 55.0, 0.35, 0.0, 0.45, 0.01),
    "restaurants": _Category(0.22, 1.3, 28.0, 0.60, 0.10, 0.70, 0.02),
    "fashion": _Category(0.12, 0.8, 60.0, 0.75, 0.35, 0.50, 0.05),
    "travel": _Category(0.06, 0.4, 320.0, 0.80, 0.80, 0.50, 0.15),
    "electronics": _Category(0.08, 0.5, 220.0, 1.00, 0.50, 0.40, 0.12),
    "digital_goods": _Category(0.07, 0.8, 12.0, 0.90, 1.0, 0.0, 0.25),
    "gaming": _Category(0.05, 0.6, 18.0, 1.00, 0.95, 0.50, 0.25),
}
_CATEGORY_IDX = {name: i for i, name in enumerate(CATEGORIES)}
_PROFILES = [_CATEGORY[name] for name in CATEGORIES]
_MERCHANT_MIX = np.array([p.merchant_share for p in _PROFILES]) / sum(
    p.merchant_share for p in _PROFILES
)
_TRAFFIC = np.array([p.traffic for p in _PROFILES])
_LOG_MEDIAN = np.log([p.median_amount for p in _PROFILES])
_SIGMA = np.array([p.amount_sigma for p in _PROFILES])
_FOREIGN_SHARE = np.array([p.foreign_share for p in _PROFILES])
_HIGH_RISK = np.isin(CATEGORIES, ("electronics", "digital_goods", "gaming", "travel"))


def _channel_matrix(online: np.ndarray) -> np.ndarray:
    """P(channel | category) in CHANNELS order, from the online and contactless shares."""
    contactless = np.array([p.contactless_share for p in _PROFILES])
    by_name = {
        "online": online,
        "contactless": (1 - online) * contactless,
        "pos": (1 - online) * (1 - contactless),
    }
    return np.stack([by_name[c] for c in CHANNELS], axis=1)


_LEGIT_CHANNELS = _channel_matrix(np.array([p.online_share for p in _PROFILES]))
_FRAUD_CHANNELS = _channel_matrix(np.array([max(p.online_share, 0.85) for p in _PROFILES]))
_ONLINE = CHANNELS.index("online")
_TERMINAL = DEVICES.index("terminal")
_MOBILE = DEVICES.index("mobile")
_DESKTOP = DEVICES.index("desktop")

_FOREIGN = ("US", "GB", "NG", "BR")
_CUSTOMER_COUNTRY = {"DE": 24, "FR": 17, "NL": 9, "ES": 12, "IT": 12, "BE": 5, "AT": 4, "PL": 6}
_CUSTOMER_COUNTRY |= {"SE": 3, "IE": 2, "PT": 3, "GB": 2, "US": 1}
_FOREIGN_MERCHANT_COUNTRY = {"US": 40, "GB": 35, "BR": 15, "NG": 10}


def _weights(by_name: dict[str, float], domain: tuple[str, ...]) -> np.ndarray:
    w = np.array([by_name.get(name, 0.0) for name in domain], dtype=float)
    return w / w.sum()


_CUSTOMER_COUNTRY_P = _weights(_CUSTOMER_COUNTRY, COUNTRIES)
_DOMESTIC_MERCHANT_P = _weights(
    {c: w for c, w in _CUSTOMER_COUNTRY.items() if c not in _FOREIGN}, COUNTRIES
)
_FOREIGN_MERCHANT_P = _weights(_FOREIGN_MERCHANT_COUNTRY, COUNTRIES)
_SEGMENT_P = _weights({"retail": 80, "premium": 15, "business": 5}, SEGMENTS)
_AGE_P = _weights(dict(zip(AGE_BANDS, (12, 22, 22, 20, 14, 10), strict=False)), AGE_BANDS)
_DRIFT_MERCHANT_MIX = _weights({"digital_goods": 55, "gaming": 35, "electronics": 10}, CATEGORIES)

# Payments per hour of day (UTC): quiet nights, lunch and evening peaks; fraud runs at night.
_LEGIT_HOURS = np.array([
    0.6, 0.35, 0.25, 0.2, 0.25, 0.5, 1.2, 2.6, 4.0, 4.8, 5.4, 6.2,
    7.2, 6.8, 5.9, 5.6, 6.0, 6.9, 7.4, 6.8, 5.6, 4.2, 2.8, 1.4,
])  # fmt: skip
_FRAUD_HOURS = np.array([
    7.0, 7.5, 7.5, 7.0, 6.0, 4.5, 3.0, 2.0, 1.5, 1.5, 1.5, 1.5,
    1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 2.0, 2.0, 2.5, 3.0, 4.0, 5.5,
])  # fmt: skip
_LEGIT_HOURS /= _LEGIT_HOURS.sum()
_FRAUD_HOURS /= _FRAUD_HOURS.sum()
_ANY_HOUR = np.full(24, 1 / 24)

_FIRST_NAMES = (
    "anna", "ben", "chloe", "david", "elena", "felix", "greta", "hugo", "ines", "jan", "klara",
    "lucas", "marie", "noah", "olga", "pablo", "quinn", "rosa", "sven", "tess", "ugo", "vera",
    "wim", "yara", "zoe", "lena", "marco", "sofia", "tomas", "julia",
)  # fmt: skip
_SURNAMES = (
    "muller", "schmidt", "dubois", "martin", "jansen", "devries", "garcia", "lopez", "rossi",
    "russo", "peeters", "huber", "nowak", "kowalski", "andersson", "murphy", "silva", "santos",
    "bauer", "wagner", "moreau", "bakker", "fernandez", "romano", "lambert", "wolf", "berg",
    "costa", "keller", "visser",
)  # fmt: skip
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
_PROMO_CODES = ("SPRING10", "WELCOME5", "FREESHIP", "BLACKFRIDAY25")

_PROFILE_CHANGE_RATE = 0.01  # existing customers with a new profile version per day
_NEW_CUSTOMER_RATE = 0.002  # new customers per day, relative to config.customers
_NEW_MERCHANT_RATE = 0.002  # new merchants per day, relative to config.merchants
_COMPROMISED_RATE = 0.009  # compromised-card fraud, share of daily payments
_CARD_TESTING_RATE = 0.004  # card-testing fraud after the drift, share of daily payments
_FRAUD_AMOUNT_UPLIFT = 0.8  # log scale: compromised-card buys are ~2x larger
_FRAUD_DISPUTE_RATE = 0.9
_LEGIT_DISPUTE_RATE = 0.001
_MAX_DISPUTE_DAYS = 45
_DRIFT_AMOUNT_SCALE = 1.6
_DRIFT_AMOUNT_SIGMA = 0.4  # extra lognormal noise: a heavier tail
_DRIFT_MERCHANT_SHARE = 0.2  # new merchants on the drift day, relative to config.merchants
_DRIFT_TRAFFIC_SHARE = 0.35  # of legit payments that go to them
_CLEAN_AMOUNT_CAP = MAX_AMOUNT * 0.4  # clean amounts never look absurd
_PROMO_SHARE = 0.1


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate; the same config always yields the same rows."""

    seed: int = 7
    start: date = date(2024, 1, 1)
    days: int = 14
    customers: int = 2_000
    merchants: int = 200
    transactions_per_day: int = 5_000
    bad_record_rate: float = 0.005
    duplicate_rate: float = 0.005
    formats: tuple[str, ...] = FORMATS
    extra_column_day: int | None = 5
    renamed_column_day: int | None = 9
    drift_start_day: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        counts = {
            "days": self.days,
            "customers": self.customers,
            "merchants": self.merchants,
            "transactions_per_day": self.transactions_per_day,
        }
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        for name in ("bad_record_rate", "duplicate_rate"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                raise ValueError(f"{name} must be within [0, 0.5], got {getattr(self, name)}")
        unknown = set(self.formats) - set(FORMATS)
        if not self.formats or unknown:
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {self.formats}")
        for name in ("extra_column_day", "renamed_column_day", "drift_start_day"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be a day index >= 0 or None")

    def format_for(self, table: str, day: int) -> str:
        """Rotate formats over days and tables so every reader path gets exercised."""
        table_index = list(TABLES).index(table)
        return self.formats[(day + table_index) % len(self.formats)]

    def drifted(self, day: int) -> bool:
        return self.drift_start_day is not None and day >= self.drift_start_day

    def day_start_us(self, day: int) -> int:
        return ((self.start - _EPOCH).days + day) * _DAY_US


@dataclass(frozen=True)
class FileSummary:
    """One landing file and the defects deliberately put into it."""

    table: str
    day: date
    path: Path
    format: str
    rows: int  # written, duplicates and bad records included
    duplicates: int
    bad_records: dict[str, int]  # kind -> rows, for every kind the table can have
    columns: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "day": self.day.isoformat(),
            "path": str(self.path),
            "format": self.format,
            "rows": self.rows,
            "duplicates": self.duplicates,
            "bad_records": dict(self.bad_records),
            "columns": list(self.columns),
        }


@dataclass(frozen=True)
class GenerationSummary:
    """Ground truth of a run: the files written, what was injected, and the fraud labels' size."""

    config: GeneratorConfig
    landing_dir: Path
    files: tuple[FileSummary, ...]
    transactions: int  # distinct payments, duplicates excluded
    fraud_transactions: int
    chargebacks_pending: int  # disputes that will only be reported after the last day

    @property
    def fraud_rate(self) -> float:
        return self.fraud_transactions / self.transactions

    def file(self, table: str, day: date) -> FileSummary | None:
        """The file of `table` that landed on `day`, None if that day had no rows."""
        return next((f for f in self.files if f.table == table and f.day == day), None)

    def table_totals(self, table: str) -> dict[str, Any]:
        files = [f for f in self.files if f.table == table]
        return {
            "files": len(files),
            "rows": sum(f.rows for f in files),
            "duplicates": sum(f.duplicates for f in files),
            "bad_records": {k: sum(f.bad_records[k] for f in files) for k in _DEFECT_KINDS[table]},
        }

    def to_dict(self, include_files: bool = True) -> dict[str, Any]:
        config = asdict(self.config) | {
            "start": self.config.start.isoformat(),
            "formats": list(self.config.formats),
        }
        out: dict[str, Any] = {
            "landing_dir": str(self.landing_dir),
            "config": config,
            "transactions": self.transactions,
            "fraud_transactions": self.fraud_transactions,
            "fraud_rate": round(self.fraud_rate, 6),
            "chargebacks_pending": self.chargebacks_pending,
            "tables": {table: self.table_totals(table) for table in TABLES},
        }
        if include_files:
            out["files"] = [f.to_dict() for f in self.files]
        return out


@dataclass(frozen=True)
class _Merchants:
    ids: pl.Series
    category: np.ndarray
    foreign: np.ndarray
    popularity: np.ndarray
    active_from: np.ndarray  # first day index with payments
    drift: np.ndarray
    landing: list[pl.DataFrame]  # rows per onboarding day


@dataclass(frozen=True)
class _Customers:
    ids: pl.Series
    activity: np.ndarray
    active_from: np.ndarray  # non-decreasing: customers are numbered in order of arrival
    landing: list[pl.DataFrame]  # profile versions per day


@dataclass(frozen=True)
class _Disputes:
    transaction: np.ndarray  # transaction number
    reported_us: np.ndarray
    reason: np.ndarray  # index into REASON_CODES
    amount: np.ndarray


def _rng(config: GeneratorConfig, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, stream, *keys])


def _iso(us: np.ndarray) -> pl.Series:
    return pl.Series(us, dtype=pl.Int64).cast(pl.Datetime("us")).dt.strftime(_ISO_FORMAT)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    return prefix + pl.Series(numbers, dtype=pl.Int64).cast(pl.String).str.zfill(width)


def _labels(domain: tuple[str, ...], idx: np.ndarray) -> pl.Series:
    """Map indices to domain values; a negative index becomes null."""
    index = pl.Series(idx, dtype=pl.Int64)
    missing = np.flatnonzero(idx < 0)
    if missing.size:
        index.scatter(missing, None)
    return pl.Series(domain, dtype=pl.String).gather(index)


def _pick(rng: np.random.Generator, n: int, pool: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return pool[rng.choice(pool.size, size=n, p=weight[pool] / weight[pool].sum())]


def _times_of_day(rng: np.random.Generator, n: int, hours: np.ndarray) -> np.ndarray:
    return rng.choice(24, size=n, p=hours) * _HOUR_US + rng.integers(0, _HOUR_US, size=n)


def _draw_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a probability matrix."""
    return (rng.random(len(probs))[:, None] > probs.cumsum(axis=1)[:, :-1]).sum(axis=1)


def _emails(rng: np.random.Generator, n: int) -> pl.Series:
    parts = pl.DataFrame(
        {
            "first": _labels(_FIRST_NAMES, rng.integers(len(_FIRST_NAMES), size=n)),
            "last": _labels(_SURNAMES, rng.integers(len(_SURNAMES), size=n)),
            "number": rng.integers(1, 1000, size=n),
            "domain": _labels(_EMAIL_DOMAINS, rng.integers(len(_EMAIL_DOMAINS), size=n)),
        }
    )
    return parts.select(pl.format("{}.{}{}@{}", "first", "last", "number", "domain")).to_series()


def _card_numbers(rng: np.random.Generator, n: int) -> pl.Series:
    """16-digit Visa/Mastercard-like PANs with a valid Luhn check digit."""
    body = rng.integers(0, 10, size=(n, 15))
    body[:, 0] = rng.choice([4, 5], size=n, p=[0.6, 0.4])
    doubled = body[:, 0::2] * 2  # every second digit from the right, the check digit excluded
    total = body[:, 1::2].sum(axis=1) + np.where(doubled > 9, doubled - 9, doubled).sum(axis=1)
    check = (10 - total % 10) % 10
    number = body @ (10 ** np.arange(15, 0, -1, dtype=np.int64)) + check
    return pl.Series(number, dtype=pl.Int64).cast(pl.String)


def _merchants(config: GeneratorConfig) -> _Merchants:
    """All merchants of the run: the day-0 base, a trickle of new ones, the drift cohort."""
    batches: list[dict[str, np.ndarray]] = []
    for day in range(config.days):
        rng = _rng(config, _MERCHANT_STREAM, day)
        start = config.day_start_us(day)
        if day == 0:
            n = config.merchants
            batches.append(_merchant_batch(rng, n, _MERCHANT_MIX, np.full(n, start), 0))
        else:
            n = rng.poisson(config.merchants * _NEW_MERCHANT_RATE)
            onboarded = start + rng.integers(0, _DAY_US, size=n)
            batches.append(_merchant_batch(rng, n, _MERCHANT_MIX, onboarded, day + 1))
        if day == config.drift_start_day:
            n = math.ceil(config.merchants * _DRIFT_MERCHANT_SHARE)
            batch = _merchant_batch(rng, n, _DRIFT_MERCHANT_MIX, np.full(n, start), day)
            batches.append(batch | {"drift": np.ones(n, dtype=bool)})
    cols = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    order = np.argsort(cols["created_us"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    ids = _ids("M", np.arange(1, order.size + 1), 5)
    day_index = (cols["created_us"] - config.day_start_us(0)) // _DAY_US
    frame = pl.DataFrame(
        {
            "merchant_id": ids,
            "category": _labels(CATEGORIES, cols["category"]),
            "country": _labels(COUNTRIES, cols["country"]),
            "created_at": _iso(cols["created_us"]),
        }
    )
    return _Merchants(
        ids=ids,
        category=cols["category"],
        foreign=np.isin(cols["country"], [COUNTRIES.index(c) for c in _FOREIGN]),
        popularity=cols["popularity"],
        active_from=cols["active_from"],
        drift=cols["drift"],
        landing=[frame.filter(pl.Series(day_index == day)) for day in range(config.days)],
    )


def _merchant_batch(
    rng: np.random.Generator, n: int, mix: np.ndarray, created_us: np.ndarray, active_from: int
) -> dict[str, np.ndarray]:
    category = rng.choice(len(CATEGORIES), size=n, p=mix)
    foreign = rng.random(n) < _FOREIGN_SHARE[category]
    country = np.where(
        foreign,
        rng.choice(len(COUNTRIES), size=n, p=_FOREIGN_MERCHANT_P),
        rng.choice(len(COUNTRIES), size=n, p=_DOMESTIC_MERCHANT_P),
    )
    return {
        "category": category,
        "country": country,
        "popularity": rng.lognormal(0.0, 1.0, size=n) * _TRAFFIC[category],
        "created_us": np.asarray(created_us, dtype=np.int64),
        "active_from": np.full(n, active_from),
        "drift": np.zeros(n, dtype=bool),
    }


def _activity(rng: np.random.Generator, n: int) -> np.ndarray:
    """Skewed payment frequency per customer, capped so no card pays hundreds of times a day."""
    return np.minimum(rng.lognormal(0.0, 0.8, size=n), 15.0)


def _customers(config: GeneratorConfig) -> _Customers:
    """Customers and their profile versions; state is carried day to day so versions chain."""
    rng = _rng(config, _CUSTOMER_STREAM, 0)
    n = config.customers
    country = rng.choice(len(COUNTRIES), size=n, p=_CUSTOMER_COUNTRY_P)
    segment = rng.choice(len(SEGMENTS), size=n, p=_SEGMENT_P)
    age = rng.choice(len(AGE_BANDS), size=n, p=_AGE_P)
    emails = _emails(rng, n)
    cards = _card_numbers(rng, n)
    activity = _activity(rng, n)
    active_from = np.zeros(n, dtype=np.int64)

    def snapshot(rows: np.ndarray, updated_us: np.ndarray) -> pl.DataFrame:
        order = np.argsort(updated_us, kind="stable")
        rows, updated_us = rows[order], updated_us[order]
        return pl.DataFrame(
            {
                "customer_id": _ids("C", rows + 1, 7),
                "email": emails.gather(rows),
                "card_number": cards.gather(rows),
                "country": _labels(COUNTRIES, country[rows]),
                "segment": _labels(SEGMENTS, segment[rows]),
                "age_band": _labels(AGE_BANDS, age[rows]),
                "updated_at": _iso(updated_us),
            }
        )

    landing = [snapshot(np.arange(n), np.full(n, config.day_start_us(0)))]
    for day in range(1, config.days):
        rng = _rng(config, _CUSTOMER_STREAM, day)
        existing = country.size
        changed = rng.choice(existing, rng.binomial(existing, _PROFILE_CHANGE_RATE), replace=False)
        field = rng.integers(3, size=changed.size)
        rows = changed[field == 0]
        other = segment[rows] + rng.integers(1, len(SEGMENTS), size=rows.size)
        segment[rows] = other % len(SEGMENTS)
        rows = changed[field == 1]
        moved = rng.choice(len(COUNTRIES), size=rows.size, p=_CUSTOMER_COUNTRY_P)
        country[rows] = np.where(moved == country[rows], (moved + 1) % len(COUNTRIES), moved)
        rows = changed[field == 2]
        emails.scatter(rows, _emails(rng, rows.size))

        new = rng.poisson(config.customers * _NEW_CUSTOMER_RATE)
        country = np.concatenate(
            [country, rng.choice(len(COUNTRIES), size=new, p=_CUSTOMER_COUNTRY_P)]
        )
        segment = np.concatenate([segment, rng.choice(len(SEGMENTS), size=new, p=_SEGMENT_P)])
        age = np.concatenate([age, rng.choice(len(AGE_BANDS), size=new, p=_AGE_P)])
        emails = pl.concat([emails, _emails(rng, new)])
        cards = pl.concat([cards, _card_numbers(rng, new)])
        activity = np.concatenate([activity, _activity(rng, new)])
        active_from = np.concatenate([active_from, np.full(new, day + 1)])

        rows = np.concatenate([changed, np.arange(existing, existing + new)])
        updated = config.day_start_us(day) + rng.integers(0, _DAY_US, size=rows.size)
        landing.append(snapshot(rows, updated))
    return _Customers(
        ids=_ids("C", np.arange(1, country.size + 1), 7),
        activity=activity,
        active_from=active_from,
        landing=landing,
    )


def _burst_sizes(rng: np.random.Generator, target: float, low: int, high: int) -> np.ndarray:
    """Whole bursts adding up to `target` rows on average, so the fraud rate stays on target."""
    sizes = rng.integers(low, high + 1, size=int(target // low) + 1)
    n = int(np.searchsorted(np.cumsum(sizes), target, side="right"))
    remainder = target - sizes[:n].sum()
    if n < sizes.size and rng.random() < remainder / sizes[n]:
        n += 1
    return sizes[:n]


def _burst_times(
    rng: np.random.Generator, sizes: np.ndarray, hours: np.ndarray, gap_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Bursts of payments seconds to minutes apart: each row's offset in the day and burst."""
    burst = np.repeat(np.arange(sizes.size), sizes)
    first = np.cumsum(sizes) - sizes
    gaps = (rng.exponential(gap_s, size=burst.size) * _SECOND_US).astype(np.int64) + _SECOND_US
    gaps[first] = 0
    offset = np.cumsum(gaps)
    offset -= offset[first][burst]
    span = offset[first + sizes - 1]
    start = np.minimum(_times_of_day(rng, sizes.size, hours), _DAY_US - 1 - span)
    return start[burst] + offset, burst


def _amounts(rng: np.random.Generator, category: np.ndarray, log_uplift: float) -> np.ndarray:
    return np.exp(
        _LOG_MEDIAN[category] + log_uplift + _SIGMA[category] * rng.standard_normal(category.size)
    )


def _devices(rng: np.random.Generator, channel: np.ndarray, online_p: list[float]) -> np.ndarray:
    """Terminal for card-present payments; mobile, desktop or unknown (-1) online."""
    online = rng.choice([_MOBILE, _DESKTOP, -1], size=channel.size, p=online_p)
    return np.where(channel == _ONLINE, online, _TERMINAL)


def _transactions(
    config: GeneratorConfig, day: int, customers: _Customers, merchants: _Merchants
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """One day of payments by event time: frame, event µs, fraud flags, transaction numbers."""
    rng = _rng(config, _TRANSACTION_STREAM, day)
    tpd = config.transactions_per_day
    drifted = config.drifted(day)
    n_customers = int(np.searchsorted(customers.active_from, day, side="right"))
    live = merchants.active_from <= day
    fraud_cap = tpd // 4

    compromised = _burst_sizes(rng, tpd * _COMPROMISED_RATE, 3, 10)
    testing = _burst_sizes(rng, tpd * _CARD_TESTING_RATE, 8, 25) if drifted else compromised[:0]
    compromised = compromised[np.cumsum(compromised) <= fraud_cap]
    testing = testing[np.cumsum(testing) <= fraud_cap - compromised.sum()]
    n_legit = tpd - compromised.sum() - testing.sum()

    # Legit payments: heavy-tailed customer activity, popular merchants, a daily rhythm.
    customer = rng.choice(
        n_customers,
        size=n_legit,
        p=customers.activity[:n_customers] / customers.activity[:n_customers].sum(),
    )
    merchant = _pick(rng, n_legit, np.flatnonzero(live & ~merchants.drift), merchants.popularity)
    drift_pool = np.flatnonzero(live & merchants.drift)
    if drifted and drift_pool.size:
        to_drift = np.flatnonzero(rng.random(n_legit) < _DRIFT_TRAFFIC_SHARE)
        merchant[to_drift] = _pick(rng, to_drift.size, drift_pool, merchants.popularity)
    category = merchants.category[merchant]
    amount = _amounts(rng, category, 0.0)
    channel = _draw_rows(rng, _LEGIT_CHANNELS[category])
    device = _devices(rng, channel, [0.6, 0.37, 0.03])
    event = _times_of_day(rng, n_legit, _LEGIT_HOURS)

    # Compromised cards: night bursts of online buys at high-risk, often foreign, merchants.
    offset, burst = _burst_times(rng, compromised, _FRAUD_HOURS, 90.0)
    victims = rng.choice(n_customers, size=compromised.size, replace=compromised.size > n_customers)
    risky = np.flatnonzero(live & _HIGH_RISK[merchants.category])
    risky = risky if risky.size else np.flatnonzero(live)
    risky_foreign = risky[merchants.foreign[risky]]
    f_merchant = _pick(rng, burst.size, risky, merchants.popularity)
    if risky_foreign.size:
        abroad = np.flatnonzero(rng.random(burst.size) < 0.5)
        f_merchant[abroad] = _pick(rng, abroad.size, risky_foreign, merchants.popularity)
    f_category = merchants.category[f_merchant]
    f_channel = _draw_rows(rng, _FRAUD_CHANNELS[f_category])
    parts = [
        (customer, merchant, amount, channel, device, event),
        (
            victims[burst],
            f_merchant,
            _amounts(rng, f_category, _FRAUD_AMOUNT_UPLIFT),
            f_channel,
            _devices(rng, f_channel, [0.4, 0.55, 0.05]),
            offset,
        ),
    ]
    if drifted:
        parts.append(_card_testing(rng, testing, n_customers, live, merchants))

    customer, merchant, amount, channel, device, event = (
        np.concatenate(c) for c in zip(*parts, strict=True)
    )
    fraud = np.arange(customer.size) >= n_legit
    if drifted:
        uplift = _DRIFT_AMOUNT_SCALE * rng.lognormal(0.0, _DRIFT_AMOUNT_SIGMA, size=amount.size)
        amount = np.where(np.arange(amount.size) < tpd - testing.sum(), amount * uplift, amount)
    amount = np.round(np.clip(amount, 0.01, _CLEAN_AMOUNT_CAP), 2)

    order = np.argsort(event, kind="stable")
    event = config.day_start_us(day) + event[order]
    number = day * tpd + np.arange(1, tpd + 1)
    frame = pl.DataFrame(
        {
            "transaction_id": _ids("T", number, 10),
            "customer_id": customers.ids.gather(customer[order]),
            "merchant_id": merchants.ids.gather(merchant[order]),
            "amount": amount[order],
            "channel": _labels(CHANNELS, channel[order]),
            "device": _labels(DEVICES, device[order]),
            "event_time": _iso(event),
        }
    ).with_columns(currency=pl.lit(CURRENCIES[0]))
    return frame.select(TRANSACTIONS.column_names), event, fraud[order], number


def _card_testing(
    rng: np.random.Generator,
    sizes: np.ndarray,
    n_customers: int,
    live: np.ndarray,
    merchants: _Merchants,
) -> tuple[np.ndarray, ...]:
    """The drift's new fraud pattern: bots trying stolen cards with tiny online payments."""
    offset, burst = _burst_times(rng, sizes, _ANY_HOUR, 20.0)
    victims = rng.choice(n_customers, size=sizes.size, replace=sizes.size > n_customers)
    digital = np.flatnonzero(live & (merchants.category == _CATEGORY_IDX["digital_goods"]))
    digital = digital if digital.size else np.flatnonzero(live)
    merchant = _pick(rng, burst.size, digital, merchants.popularity * (1 + 4 * merchants.drift))
    channel = np.full(burst.size, _ONLINE)
    return (
        victims[burst],
        merchant,
        rng.uniform(0.5, 5.0, size=burst.size),
        channel,
        _devices(rng, channel, [0.1, 0.85, 0.05]),
        offset,
    )


def _disputes(
    config: GeneratorConfig,
    day: int,
    event_us: np.ndarray,
    fraud: np.ndarray,
    number: np.ndarray,
    amount: np.ndarray,
) -> _Disputes:
    """Chargebacks for one day of payments: most fraud (usually within a week) and a few legit
    ones, 1-45 days later."""
    rng = _rng(config, _CHARGEBACK_STREAM, day)
    u = rng.random(event_us.size)
    disputed = np.flatnonzero(np.where(fraud, u < _FRAUD_DISPUTE_RATE, u < _LEGIT_DISPUTE_RATE))
    is_fraud = fraud[disputed]
    delay_days = np.where(
        is_fraud,
        1.0 + rng.gamma(2.0, 2.0, size=disputed.size),  # fraud: most within a week
        2.0 + rng.gamma(2.0, 6.0, size=disputed.size),
    )
    delay = np.clip((delay_days * _DAY_US).astype(np.int64), _DAY_US, _MAX_DISPUTE_DAYS * _DAY_US)
    other = rng.choice(
        [REASON_CODES.index(r) for r in REASON_CODES if r != "fraud"], size=disputed.size
    )
    return _Disputes(
        transaction=number[disputed],
        reported_us=event_us[disputed] + delay,
        reason=np.where(is_fraud, REASON_CODES.index("fraud"), other),
        amount=amount[disputed],
    )


def _chargeback_frames(
    config: GeneratorConfig, disputes: list[_Disputes]
) -> tuple[list[pl.DataFrame], list[np.ndarray], int]:
    """Chargebacks known by the end of the run, per reported day, numbered in report order."""
    reported = np.concatenate([d.reported_us for d in disputes])
    transaction = np.concatenate([d.transaction for d in disputes])
    reason = np.concatenate([d.reason for d in disputes])
    amount = np.concatenate([d.amount for d in disputes])
    known = reported < config.day_start_us(config.days)
    order = np.lexsort((transaction, reported))
    order = order[known[order]]
    day_index = (reported[order] - config.day_start_us(0)) // _DAY_US
    frame = pl.DataFrame(
        {
            "chargeback_id": _ids("CB", np.arange(1, order.size + 1), 9),
            "transaction_id": _ids("T", transaction[order], 10),
            "reported_at": _iso(reported[order]),
            "reason_code": _labels(REASON_CODES, reason[order]),
            "amount": amount[order],
        }
    )
    bounds = np.searchsorted(day_index, np.arange(config.days + 1))
    frames = [frame.slice(bounds[d], bounds[d + 1] - bounds[d]) for d in range(config.days)]
    times = [reported[order][bounds[d] : bounds[d + 1]] for d in range(config.days)]
    return frames, times, int((~known).sum())


def _null_required(
    frame: pl.DataFrame, rows: np.ndarray, rng: np.random.Generator, spec: SourceTable, day: date
) -> pl.DataFrame:
    required = [c.name for c in spec.columns if c.required]
    column = rng.integers(len(required), size=rows.size)
    return frame.with_columns(
        _scatter(frame[name], rows[column == i], None) for i, name in enumerate(required)
    )


def _negative_amount(
    frame: pl.DataFrame, rows: np.ndarray, rng: np.random.Generator, spec: SourceTable, day: date
) -> pl.DataFrame:
    return frame.with_columns(_scatter(frame["amount"], rows, -frame["amount"].gather(rows)))


def _absurd_amount(
    frame: pl.DataFrame, rows: np.ndarray, rng: np.random.Generator, spec: SourceTable, day: date
) -> pl.DataFrame:
    absurd = np.round(MAX_AMOUNT * rng.uniform(20.0, 20_000.0, size=rows.size), 2)
    return frame.with_columns(_scatter(frame["amount"], rows, pl.Series(absurd)))


def _bad_timestamp(
    frame: pl.DataFrame, rows: np.ndarray, rng: np.random.Generator, spec: SourceTable, day: date
) -> pl.DataFrame:
    garbage = (
        f"{day.isoformat()}T25:61:00",
        f"{day.year}-02-30T12:00:00.000000",
        "not-a-timestamp",
        "0000-00-00T00:00:00",
    )
    values = _labels(garbage, rng.integers(len(garbage), size=rows.size))
    return frame.with_columns(_scatter(frame[spec.event_time], rows, values))


_INJECT = {
    "null_required": _null_required,
    "negative_amount": _negative_amount,
    "absurd_amount": _absurd_amount,
    "bad_timestamp": _bad_timestamp,
}


def _scatter(series: pl.Series, rows: np.ndarray, values: pl.Series | None) -> pl.Series:
    out = series.clone()
    if rows.size:
        out.scatter(rows, values)
    return out


def _land(
    config: GeneratorConfig,
    landing_dir: Path,
    spec: SourceTable,
    day: int,
    frame: pl.DataFrame,
    arrival_us: np.ndarray | None,
) -> FileSummary | None:
    """Spoil one day's clean rows as configured, write them, and record what was spoiled.

    `arrival_us` orders the rows of tables whose rows get re-sent; None for the others.
    """
    if frame.is_empty():
        return None
    rng = _rng(config, _DEFECT_STREAM, list(TABLES).index(spec.name), day)
    on = config.start + timedelta(days=day)
    n = frame.height
    transactions = spec.name == TRANSACTIONS.name
    if transactions and day == config.extra_column_day:
        code = rng.integers(len(_PROMO_CODES), size=n)
        promo = _labels(_PROMO_CODES, np.where(rng.random(n) < _PROMO_SHARE, code, -1))
        frame = frame.with_columns(promo.alias("promo_code"))

    kinds = _DEFECT_KINDS[spec.name]
    n_bad = rng.binomial(n, config.bad_record_rate) if kinds else 0
    bad = rng.choice(n, size=n_bad, replace=False)
    kind = rng.integers(max(len(kinds), 1), size=n_bad)
    bad_records = {}
    for i, name in enumerate(kinds):
        rows = np.sort(bad[kind == i])
        bad_records[name] = rows.size
        frame = _INJECT[name](frame, rows, rng, spec, on)

    duplicates = 0
    if arrival_us is not None:
        clean = np.setdiff1d(np.arange(n), bad)
        duplicates = min(int(rng.binomial(n, config.duplicate_rate)), clean.size)
        source = rng.choice(clean, size=duplicates, replace=False)
        resent = arrival_us[source] + rng.integers(_SECOND_US, 600 * _SECOND_US, size=duplicates)
        order = np.argsort(np.concatenate([arrival_us, resent]), kind="stable")
        frame = pl.concat([frame, frame[source]])[order]

    if transactions and day == config.renamed_column_day:
        frame = frame.rename({"amount": "amount_eur"})

    fmt = config.format_for(spec.name, day)
    folder = landing_dir / spec.name / on.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}-{on.isoformat()}.{fmt}"
    for other in FORMATS:  # a rerun with other formats must not leave a second copy of the day
        if other != fmt:
            path.with_suffix(f".{other}").unlink(missing_ok=True)
    _WRITERS[fmt](frame, path)
    return FileSummary(
        table=spec.name,
        day=on,
        path=path,
        format=fmt,
        rows=frame.height,
        duplicates=duplicates,
        bad_records=bad_records,
        columns=tuple(frame.columns),
    )


def _mark_delivered(config: GeneratorConfig, landing_dir: Path) -> None:
    """Mark each table's days delivered, after their files and also when they had no rows: a
    consumer can then tell an empty day from one that has not arrived yet."""
    for table in TABLES:
        for day in range(config.days):
            folder = landing_dir / table / (config.start + timedelta(days=day)).isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            (folder / DELIVERED_MARKER).touch()


def generate(config: GeneratorConfig, landing_dir: Path) -> GenerationSummary:
    """Write every landing file of `config` under `landing_dir` and return the ground truth."""
    landing_dir = Path(landing_dir)
    merchants = _merchants(config)
    customers = _customers(config)
    files: list[FileSummary | None] = []
    disputes: list[_Disputes] = []
    fraud_transactions = 0
    for day in range(config.days):
        files.append(_land(config, landing_dir, CUSTOMERS, day, customers.landing[day], None))
        files.append(_land(config, landing_dir, MERCHANTS, day, merchants.landing[day], None))
        frame, event_us, fraud, number = _transactions(config, day, customers, merchants)
        files.append(_land(config, landing_dir, TRANSACTIONS, day, frame, event_us))
        amount = frame["amount"].to_numpy()
        disputes.append(_disputes(config, day, event_us, fraud, number, amount))
        fraud_transactions += int(fraud.sum())

    chargebacks, reported_us, pending = _chargeback_frames(config, disputes)
    for day, (frame, arrival) in enumerate(zip(chargebacks, reported_us, strict=True)):
        files.append(_land(config, landing_dir, CHARGEBACKS, day, frame, arrival))
    _mark_delivered(config, landing_dir)

    table_order = list(TABLES)
    landed = sorted(
        (f for f in files if f is not None), key=lambda f: (table_order.index(f.table), f.day)
    )
    return GenerationSummary(
        config=config,
        landing_dir=landing_dir,
        files=tuple(landed),
        transactions=config.days * config.transactions_per_day,
        fraud_transactions=fraud_transactions,
        chargebacks_pending=pending,
    )
