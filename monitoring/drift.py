"""Drift of a target profile from a reference profile, decided on effect sizes from the sketches.

A test's p-value answers "is there any difference at all", and at 200,000 rows a day the answer is
always yes: a KS p-value is 0 for a shift nobody cares about. So drift is decided on how large the
difference is, computed from the two profiles alone (no raw rows):

- numeric columns: PSI and Hellinger distance over the reference's deciles (probabilities from each
  KLL sketch), and the KS statistic, max |CDF_ref - CDF_target| over both sketches' percentiles;
- string columns: PSI and Hellinger distance over the frequent items (the categories outside both
  lists pooled into "other"), and the share of target rows in categories the reference never saw;
- every column: the change in its share of nulls; and the schema: columns missing, added, retyped.

whylogs' own test (KS or chi-square p-value) is reported alongside for reference, never graded.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from whylogs.core.configs import FrequentItemsErrorType, SummaryConfig
from whylogs.core.view import ColumnProfileView, DatasetProfileView
from whylogs.viz.drift.column_drift_algorithms import KS, ChiSquare

from monitoring.profiles import NUMERIC_KINDS, column_type

METRICS = ("psi", "ks", "hellinger", "null_share", "unseen_share")
SEVERITIES = ("critical", "warning", "info")
SCHEMA_SEVERITY = {"missing": "critical", "added": "warning", "type_changed": "warning"}
EPSILON = 1e-4
"""Probability given to an empty bin, so PSI stays finite (ln(p/0)) yet large for a new bin."""
DECILES = [i / 10 for i in range(1, 10)]
PERCENTILES = [i / 100 for i in range(101)]
REPORT_SCHEMA = {
    "column": pl.String,
    "kind": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "warning": pl.Float64,
    "critical": pl.Float64,
    "severity": pl.String,
    "detail": pl.String,
}
_ALL_ITEMS = SummaryConfig(frequent_items_error_type=FrequentItemsErrorType.NO_FALSE_NEGATIVES)


@dataclass(frozen=True)
class Level:
    warning: float
    critical: float


@dataclass(frozen=True)
class Thresholds:
    """Warning and critical level per metric, and per column where ``calibrate`` measured one.

    Per column because noise differs by column: PSI between two samples of the same 300-category
    column is several times that of a 3-category one, and a column of ids sees new values every
    day. One level for all would either miss drift in the quiet columns or alarm on the noisy ones.
    """

    psi: Level = Level(0.1, 0.25)
    ks: Level = Level(0.1, 0.2)
    hellinger: Level = Level(0.1, 0.2)
    null_share: Level = Level(0.05, 0.2)
    unseen_share: Level = Level(0.05, 0.2)
    columns: Mapping[str, Mapping[str, Level]] = field(default_factory=dict)

    def level(self, column: str, metric: str) -> Level:
        return self.columns.get(column, {}).get(metric, getattr(self, metric))

    def to_json(self) -> str:
        """Stored beside the reference profile they were calibrated against."""
        return json.dumps(
            {
                **{m: vars(getattr(self, m)) for m in METRICS},
                "columns": {
                    column: {m: vars(level) for m, level in by.items()}
                    for column, by in self.columns.items()
                },
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Thresholds:
        data = json.loads(text)
        return cls(
            **{m: Level(**data[m]) for m in METRICS},
            columns={
                c: {m: Level(**v) for m, v in by.items()} for c, by in data["columns"].items()
            },
        )


DEFAULT = Thresholds()


def calibrate(
    reference: DatasetProfileView,
    stationary: Sequence[DatasetProfileView],
    margin: float = 1.5,
    floor: Thresholds = DEFAULT,
    columns: Sequence[str] | None = None,
) -> Thresholds:
    """Levels just above the noise of days known to be stationary (e.g. the training window's).

    Per metric and column, the worst value over ``stationary`` times ``margin`` is the warning
    level, twice that the critical one, neither below ``floor``; the worst over all columns sets
    the levels for columns the stationary days did not have.
    """
    noise: dict[str, dict[str, float]] = defaultdict(dict)  # column -> metric -> worst value
    for day in stationary:
        for column, _, metric, value, _ in _findings(reference, day, columns, with_whylogs=False):
            if metric in METRICS:
                noise[column][metric] = max(noise[column].get(metric, 0.0), value)

    def level(base: Level, seen: float) -> Level:
        warning = max(base.warning, seen * margin)
        return Level(warning, max(base.critical, 2 * warning))

    anywhere = {m: max((by.get(m, 0.0) for by in noise.values()), default=0.0) for m in METRICS}
    return Thresholds(
        **{metric: level(getattr(floor, metric), anywhere[metric]) for metric in METRICS},
        columns={
            column: {metric: level(floor.level(column, metric), v) for metric, v in by.items()}
            for column, by in noise.items()
        },
    )


def drift_report(
    reference: DatasetProfileView,
    target: DatasetProfileView,
    thresholds: Thresholds = DEFAULT,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """One row per (column, metric) finding, the most severe and largest first.

    ``kind`` is numeric, categorical, null (share of nulls) or schema; ``detail`` says what a
    value alone cannot (the types of a retyped column, the null shares, whylogs' own verdict).
    """
    rows = []
    for column, kind, metric, value, detail in _findings(reference, target, columns):
        if metric in METRICS:
            level = thresholds.level(column, metric)
            warning, critical = level.warning, level.critical
            severity = _grade(value, level)
        else:
            warning = critical = None
            severity = SCHEMA_SEVERITY.get(metric, "info")
        rows.append((column, kind, metric, value, warning, critical, severity, detail))
    report = pl.DataFrame(rows, schema=REPORT_SCHEMA, orient="row")
    rank = pl.col("severity").replace_strict(SEVERITIES, range(len(SEVERITIES)))
    return report.sort(rank, pl.col("value"), descending=[False, True], nulls_last=True)


def worst(report: pl.DataFrame) -> str:
    """The highest severity in ``report``, "info" when it has no finding above."""
    present = set(report.get_column("severity"))
    return next((severity for severity in SEVERITIES if severity in present), "info")


def psi(reference: np.ndarray, target: np.ndarray) -> float:
    """Population stability index of two probability vectors over the same bins."""
    r, t = np.maximum(reference, EPSILON), np.maximum(target, EPSILON)
    return float(np.sum((t - r) * np.log(t / r)))


def hellinger(reference: np.ndarray, target: np.ndarray) -> float:
    """Hellinger distance of two probability vectors over the same bins, from 0 to 1."""
    return float(np.sqrt(np.sum((np.sqrt(target) - np.sqrt(reference)) ** 2) / 2))


_Finding = tuple[str, str, str, float, str | None]


def _findings(
    reference: DatasetProfileView,
    target: DatasetProfileView,
    columns: Sequence[str] | None,
    with_whylogs: bool = True,
) -> Iterator[_Finding]:
    ref_columns, target_columns = reference.get_columns(), target.get_columns()
    names = columns if columns is not None else list({**ref_columns, **target_columns})
    for name in names:
        ref, tgt = ref_columns.get(name), target_columns.get(name)
        if tgt is None:
            yield name, "schema", "missing", 1.0, "not in the target profile"
            continue
        if ref is None:
            yield name, "schema", "added", 1.0, "not in the reference profile"
            continue
        yield name, "null", "null_share", *_null_share_change(ref, tgt)
        ref_type, target_type = column_type(ref), column_type(tgt)
        if "null" in (ref_type, target_type):  # all null on one side: only null_share applies
            continue
        if ref_type != target_type:
            yield name, "schema", "type_changed", 1.0, f"{ref_type} -> {target_type}"
        kind = _kind(ref_type)
        if kind != _kind(target_type):
            continue
        effects = _numeric(ref, tgt) if kind == "numeric" else _categorical(ref, tgt)
        for metric, value in effects.items():
            yield name, kind, metric, value, None
        if with_whylogs:
            yield from _whylogs_score(name, kind, ref, tgt)


def _kind(column_type: str) -> str:
    return "numeric" if column_type in NUMERIC_KINDS else "categorical"


def _grade(value: float, level: Level) -> str:
    if value >= level.critical:
        return "critical"
    return "warning" if value >= level.warning else "info"


def _null_share_change(ref: ColumnProfileView, tgt: ColumnProfileView) -> tuple[float, str]:
    before, after = _null_share(ref), _null_share(tgt)
    return abs(after - before), f"{before:.4f} -> {after:.4f}"


def _null_share(column: ColumnProfileView) -> float:
    counts = column.get_metric("counts")
    return counts.null.value / counts.n.value if counts.n.value else 0.0


def _numeric(ref: ColumnProfileView, tgt: ColumnProfileView) -> dict[str, float]:
    ref_kll = ref.get_metric("distribution").kll.value
    target_kll = tgt.get_metric("distribution").kll.value
    # Repeated deciles (discrete values) collapse into one edge: the bins must be increasing.
    edges = np.unique(ref_kll.get_quantiles(DECILES)).tolist()
    r, t = np.asarray(ref_kll.get_pmf(edges)), np.asarray(target_kll.get_pmf(edges))
    grid = np.unique(ref_kll.get_quantiles(PERCENTILES) + target_kll.get_quantiles(PERCENTILES))
    gap = np.asarray(ref_kll.get_cdf(grid.tolist())) - np.asarray(target_kll.get_cdf(grid.tolist()))
    return {"psi": psi(r, t), "ks": float(np.abs(gap).max()), "hellinger": hellinger(r, t)}


def _categorical(ref: ColumnProfileView, tgt: ColumnProfileView) -> dict[str, float]:
    r, t = _frequencies(ref), _frequencies(tgt)
    categories = sorted(r.keys() | t.keys())
    rp = np.array([r.get(c, 0.0) for c in categories])
    tp = np.array([t.get(c, 0.0) for c in categories])
    # The mass outside both lists (long tails of purged sketches) is one more bin.
    rp, tp = np.append(rp, max(0.0, 1 - rp.sum())), np.append(tp, max(0.0, 1 - tp.sum()))
    # "Never saw" is "not among the reference's items": exact while its sketch holds every
    # category (up to 768); beyond that calibrate's per column levels absorb the overcount.
    unseen = sum(share for value, share in t.items() if value not in r)
    return {"psi": psi(rp, tp), "hellinger": hellinger(rp, tp), "unseen_share": unseen}


def _frequencies(column: ColumnProfileView) -> dict[str, float]:
    """Share of the non-null values per frequent item (every item, while the sketch holds them)."""
    counts = column.get_metric("counts")
    valid = counts.n.value - counts.null.value
    items = column.get_metric("frequent_items").to_summary_dict(_ALL_ITEMS)["frequent_strings"]
    return {item.value: item.est / valid for item in items} if valid else {}


def _whylogs_score(
    name: str, kind: str, ref: ColumnProfileView, tgt: ColumnProfileView
) -> Iterator[_Finding]:
    algorithm = KS() if kind == "numeric" else ChiSquare()
    score = algorithm.calculate(tgt, ref, with_thresholds=True)
    if score is not None and score.pvalue is not None and not math.isnan(score.pvalue):
        metric = f"whylogs_{score.algorithm.replace('-', '_')}_pvalue"
        yield name, kind, metric, float(score.pvalue), f"whylogs says {score.drift_category}"
