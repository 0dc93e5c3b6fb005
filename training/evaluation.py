"""What a trained version shows on the test split, and whether it may serve.

``evaluate`` turns scores and labels into the numbers a person reads before trusting a model: the
ranking quality (AUROC, average precision), the decision threshold that reaches the target
precision and what it does there (confusion, recall, false positives), how well the scores are
calibrated, and how recall differs between the groups of each slice (country, channel, ...).
``footprint`` measures what the model costs to serve, ``gate_reasons`` says in words which
``Gates`` a version fails (nothing: it passed), and ``write_plots`` draws the curves attached to
the run. Plain functions over numpy and polars: no Dagster, no MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from training.data import encode_inputs
from training.models import Gates
from training.trainer import MODEL, WEIGHTS, TrainedModel

CALIBRATION_BINS = 10
BATCH_ROWS = 4096
"""Rows of the batch whose throughput ``footprint`` measures."""
BATCH_REPEATS = 5
DIGITS = 6
"""Decimals kept in ``Evaluation.to_json``: far below any difference a gate or a person acts on."""
MISSING = "(missing)"
"""The group of rows whose slice value is null."""


@dataclass(frozen=True)
class Confusion:
    """Rows by truth and decision at the threshold (flagged means score >= threshold)."""

    tp: int
    fp: int
    tn: int
    fn: int


@dataclass(frozen=True)
class GroupMetrics:
    """One group of one slice column, at the evaluation's threshold.

    ``recall`` is None for a group without positives, ``false_positive_rate`` for one without
    negatives, ``auroc`` for one with a single class. ``gated``: the group has enough rows
    (``min_group_rows``) and positives (``min_group_positives``) to count toward the slice's bias
    gap; the others are reported only, since their recall is noise.
    """

    column: str
    group: str
    rows: int
    positives: int
    recall: float | None
    false_positive_rate: float | None
    auroc: float | None
    gated: bool


@dataclass(frozen=True)
class Evaluation:
    """A model's scores on labelled rows, at one decision threshold."""

    rows: int
    positives: int
    auroc: float
    average_precision: float
    threshold: float
    precision: float
    """Of the rows flagged at the threshold; 0.0 when none is flagged."""
    recall: float
    false_positive_rate: float
    confusion: Confusion
    calibration_error: float
    """Expected calibration error: the row-weighted mean of ``|mean score - fraction positive|``
    over ``CALIBRATION_BINS`` equal-width score bins."""
    calibration: tuple[tuple[float, float, int], ...]
    """``(mean score, fraction positive, rows)`` of each non-empty bin, lowest scores first."""
    groups: tuple[GroupMetrics, ...]
    bias_gaps: dict[str, float]
    """Per slice column, the largest difference in recall between its gated groups (0.0 with
    fewer than two)."""

    def to_json(self) -> dict[str, Any]:
        """Everything as plain JSON values, floats rounded to ``DIGITS`` decimals."""
        return {
            "rows": self.rows,
            "positives": self.positives,
            "auroc": _round(self.auroc),
            "average_precision": _round(self.average_precision),
            "threshold": _round(self.threshold),
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "false_positive_rate": _round(self.false_positive_rate),
            "confusion": asdict(self.confusion),
            "calibration_error": _round(self.calibration_error),
            "calibration": [
                {"mean_score": _round(score), "fraction_positive": _round(fraction), "rows": rows}
                for score, fraction, rows in self.calibration
            ],
            "groups": [
                {
                    **asdict(group),
                    "recall": _round(group.recall),
                    "false_positive_rate": _round(group.false_positive_rate),
                    "auroc": _round(group.auroc),
                }
                for group in self.groups
            ],
            "bias_gaps": {column: _round(gap) for column, gap in self.bias_gaps.items()},
        }

    def summary(self) -> dict[str, float]:
        """The headline numbers, flat, for ``mlflow.log_metrics`` and Dagster metadata."""
        return {
            "rows": float(self.rows),
            "positives": float(self.positives),
            "auroc": self.auroc,
            "average_precision": self.average_precision,
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "false_positive_rate": self.false_positive_rate,
            "calibration_error": self.calibration_error,
            **{name: float(count) for name, count in asdict(self.confusion).items()},
            **{f"bias_gap_{column}": gap for column, gap in self.bias_gaps.items()},
        }


@dataclass(frozen=True)
class Footprint:
    """What one version costs to serve: its size, and its forward pass on CPU."""

    parameters: int
    bytes: int
    """Size of the saved files serving loads (``WEIGHTS`` and ``MODEL``)."""
    p50_ms: float
    """Median forward latency of one row."""
    p99_ms: float
    rows_per_second: float
    """Forward throughput on a batch of up to ``BATCH_ROWS`` rows."""


def threshold_for_precision(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest score threshold whose precision (rows with score >= it) reaches ``target``.

    Only observed scores are candidates, and rows with the same score are flagged together, so
    the answer depends on the scores, never on row order. When no threshold reaches ``target``,
    it is the lowest threshold of the highest precision there is: the model's best effort, which
    ``gate_reasons`` then reports as missing the target.
    """
    scores, labels = _checked(scores, labels)
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target precision {target} must lie in [0, 1]")
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    true_positives = np.cumsum(labels[order])
    # The last row of each run of equal scores: flagging stops there at that threshold.
    last = np.append(ordered[1:] != ordered[:-1], True)
    thresholds = ordered[last]
    precision = true_positives[last] / (np.flatnonzero(last) + 1)
    reaching = np.flatnonzero(precision >= target)
    if reaching.size:
        return float(thresholds[reaching[-1]])
    return float(thresholds[np.flatnonzero(precision == precision.max())[-1]])


def evaluate(
    scores: np.ndarray,
    labels: np.ndarray,
    slices: pl.DataFrame,
    target_precision: float,
    min_group_rows: int,
    threshold: float | None = None,
    min_group_positives: int = 1,
) -> Evaluation:
    """The evaluation of ``scores`` (probabilities) against ``labels``.

    ``slices`` has one column per slice, in the rows' order. ``threshold`` reuses a decision
    threshold (the champion's own, when scoring it again); by default it is the one that reaches
    ``target_precision`` on these rows. Pass the gates' ``min_group_rows`` and
    ``min_group_positives`` so that the bias gaps are the ones ``gate_reasons`` judges.
    """
    scores, labels = _checked(scores, labels)
    if slices.height != scores.size:
        raise ValueError(f"slices have {slices.height} rows, scores {scores.size}")
    if labels.all() or not labels.any():
        raise ValueError("evaluation needs rows of both classes")
    if threshold is None:
        threshold = threshold_for_precision(scores, labels, target_precision)
    flagged = scores >= threshold
    confusion = Confusion(
        tp=int(np.sum(flagged & labels)),
        fp=int(np.sum(flagged & ~labels)),
        tn=int(np.sum(~flagged & ~labels)),
        fn=int(np.sum(~flagged & labels)),
    )
    calibration = _calibration(scores, labels)
    groups = {
        column: _groups(
            column,
            slices.get_column(column),
            scores,
            labels,
            flagged,
            min_group_rows,
            min_group_positives,
        )
        for column in slices.columns
    }
    gaps = {}
    for column, column_groups in groups.items():
        widest = _widest_gap(column_groups)
        gaps[column] = 0.0 if widest is None else _recall(widest[1]) - _recall(widest[0])
    return Evaluation(
        rows=int(scores.size),
        positives=int(labels.sum()),
        auroc=float(roc_auc_score(labels, scores)),
        average_precision=float(average_precision_score(labels, scores)),
        threshold=float(threshold),
        precision=_ratio(confusion.tp, confusion.tp + confusion.fp) or 0.0,
        recall=confusion.tp / (confusion.tp + confusion.fn),
        false_positive_rate=confusion.fp / (confusion.fp + confusion.tn),
        confusion=confusion,
        calibration_error=sum(rows * abs(s - f) for s, f, rows in calibration) / scores.size,
        calibration=calibration,
        groups=tuple(group for column_groups in groups.values() for group in column_groups),
        bias_gaps=gaps,
    )


def footprint(
    model: TrainedModel, directory: Path, frame: pl.DataFrame, repeats: int = 200
) -> Footprint:
    """Size and CPU forward cost of ``model``, saved in ``directory``, on rows of ``frame``.

    The model is measured where ``load`` puts it (CPU). Latency is the network's forward pass
    and sigmoid on one already-encoded row, after one warm-up, over ``repeats`` calls; encoding
    a request is serving's cost and is left out, as it is from the throughput.
    """
    if frame.is_empty():
        raise ValueError("footprint needs at least one row")
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    network = model.network.eval()
    one = encode_inputs(frame.head(1), model.columns, model.encoding)
    batch = encode_inputs(frame.head(BATCH_ROWS), model.columns, model.encoding)
    with torch.inference_mode():
        latencies = timed(lambda: torch.sigmoid(network(*one)), repeats)
        batch_seconds = float(
            np.median(timed(lambda: torch.sigmoid(network(*batch)), BATCH_REPEATS))
        )
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    return Footprint(
        parameters=sum(p.numel() for p in network.parameters()),
        bytes=sum((Path(directory) / name).stat().st_size for name in (WEIGHTS, MODEL)),
        p50_ms=float(p50),
        p99_ms=float(p99),
        rows_per_second=min(frame.height, BATCH_ROWS) / max(batch_seconds, 1e-9),
    )


def gate_reasons(
    evaluation: Evaluation,
    footprint: Footprint,
    gates: Gates,
    champion: Evaluation | None,
    champion_version: str | None = None,
) -> list[str]:
    """One sentence per gate the version fails; an empty list means it passed them all.

    ``champion`` is the current champion scored on the same test rows (at its own threshold); a
    version must reach its ``gates.compared_on`` less ``gates.champion_tolerance``.
    """
    reasons = []
    for metric, minimum in (
        ("auroc", gates.min_auroc),
        ("average_precision", gates.min_average_precision),
    ):
        value = getattr(evaluation, metric)
        if value < minimum:
            reasons.append(f"{metric} {value:.3f} is below the minimum {minimum:.3f}")
    if evaluation.precision < gates.target_precision:
        reasons.append(
            f"precision {evaluation.precision:.3f} at threshold {evaluation.threshold:.3f} "
            f"does not reach the target {gates.target_precision:.3f}"
        )
    for column, gap in evaluation.bias_gaps.items():
        widest = _widest_gap([g for g in evaluation.groups if g.column == column])
        if gap > gates.max_bias_gap and widest is not None:
            low, high = widest
            reasons.append(
                f"recall on {column} differs by {gap:.3f} (more than {gates.max_bias_gap:.3f}) "
                f"between {high.group!r} ({_recall(high):.3f}) and {low.group!r} "
                f"({_recall(low):.3f})"
            )
    if footprint.p99_ms > gates.max_latency_ms:
        reasons.append(
            f"p99 latency {footprint.p99_ms:.2f} ms exceeds {gates.max_latency_ms:.2f} ms"
        )
    if champion is not None:
        if (champion.rows, champion.positives) != (evaluation.rows, evaluation.positives):
            raise ValueError(
                f"the champion was scored on {champion.rows} rows ({champion.positives} "
                f"positive), this version on {evaluation.rows} ({evaluation.positives}): "
                "they must be compared on the same test rows"
            )
        metric = gates.compared_on
        value, theirs = getattr(evaluation, metric), getattr(champion, metric)
        if value < theirs - gates.champion_tolerance:
            version = "" if champion_version is None else f" (version {champion_version})"
            tolerance = (
                f" less the tolerance {gates.champion_tolerance:.3f}"
                if gates.champion_tolerance
                else ""
            )
            reasons.append(
                f"{metric} {value:.3f} is below the champion's {theirs:.3f}{version}{tolerance} "
                "on the same test rows"
            )
    return reasons


def write_plots(
    scores: np.ndarray, labels: np.ndarray, evaluation: Evaluation, directory: Path
) -> list[Path]:
    """ROC, precision-recall, confusion and calibration charts as PNGs in ``directory``.

    Drawn on ``matplotlib.figure.Figure`` directly: no pyplot state and no backend to choose, so
    it is safe in any process and each figure is freed with its last reference.
    """
    scores, labels = _checked(scores, labels)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    charts = {
        "roc.png": _roc,
        "precision_recall.png": _precision_recall,
        "confusion.png": _confusion,
        "calibration.png": _calibration_chart,
    }
    paths = []
    for name, draw in charts.items():
        figure = Figure(figsize=(5, 4.5), layout="constrained")
        draw(figure, scores, labels, evaluation)
        figure.savefig(directory / name, dpi=100)
        paths.append(directory / name)
    return paths


def _roc(figure: Figure, scores: np.ndarray, labels: np.ndarray, evaluation: Evaluation) -> None:
    fpr, tpr, _ = roc_curve(labels, scores)
    axes = figure.subplots()
    axes.plot(fpr, tpr, label="model")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.scatter([evaluation.false_positive_rate], [evaluation.recall], color="red", zorder=3)
    axes.set(xlabel="False positive rate", ylabel="True positive rate (recall)")
    axes.set_title(f"ROC (AUROC {evaluation.auroc:.3f})")
    axes.legend(loc="lower right")


def _precision_recall(
    figure: Figure, scores: np.ndarray, labels: np.ndarray, evaluation: Evaluation
) -> None:
    precision, recall, _ = precision_recall_curve(labels, scores)
    axes = figure.subplots()
    axes.step(recall, precision, where="post", label="model")
    fraud_rate = evaluation.positives / evaluation.rows
    axes.axhline(fraud_rate, linestyle="--", color="grey", label="fraud rate (chance)")
    axes.scatter(
        [evaluation.recall],
        [evaluation.precision],
        color="red",
        zorder=3,
        label=f"threshold {evaluation.threshold:.3f}",
    )
    axes.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02))
    axes.set_title(f"Precision-recall (AP {evaluation.average_precision:.3f})")
    axes.legend(loc="lower left")


def _confusion(
    figure: Figure, scores: np.ndarray, labels: np.ndarray, evaluation: Evaluation
) -> None:
    c = evaluation.confusion
    counts = np.array([[c.tn, c.fp], [c.fn, c.tp]])
    axes = figure.subplots()
    axes.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        axes.text(column, row, f"{count:,}", ha="center", va="center", color=color)
    axes.set_xticks([0, 1], ["not flagged", "flagged"])
    axes.set_yticks([0, 1], ["legitimate", "fraud"])
    axes.set(xlabel="Decision", ylabel="Truth")
    axes.set_title(
        f"Threshold {evaluation.threshold:.3f}: precision {evaluation.precision:.3f}, "
        f"recall {evaluation.recall:.3f}",
        fontsize="medium",
    )


def _calibration_chart(
    figure: Figure, scores: np.ndarray, labels: np.ndarray, evaluation: Evaluation
) -> None:
    mean_score, fraction, _ = zip(*evaluation.calibration, strict=True)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axes.plot(mean_score, fraction, marker="o", label="model")
    axes.set(xlabel="Mean score in bin", ylabel="Fraction positive", xlim=(0, 1), ylim=(0, 1))
    axes.set_title(f"Calibration (ECE {evaluation.calibration_error:.3f})")
    axes.legend(loc="upper left")


def _checked(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 probabilities and labels as booleans, of the same non-zero length."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.size != labels.size:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if scores.size == 0:
        raise ValueError("no rows to evaluate")
    if not np.all((scores >= 0.0) & (scores <= 1.0)):
        raise ValueError("scores must be probabilities in [0, 1] (no NaN)")
    return scores, labels


def _calibration(scores: np.ndarray, labels: np.ndarray) -> tuple[tuple[float, float, int], ...]:
    bins = np.minimum((scores * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    rows = np.bincount(bins, minlength=CALIBRATION_BINS)
    score_sums = np.bincount(bins, weights=scores, minlength=CALIBRATION_BINS)
    positives = np.bincount(bins, weights=labels, minlength=CALIBRATION_BINS)
    return tuple(
        (float(score_sums[b] / rows[b]), float(positives[b] / rows[b]), int(rows[b]))
        for b in np.flatnonzero(rows)
    )


def _groups(
    column: str,
    values: pl.Series,
    scores: np.ndarray,
    labels: np.ndarray,
    flagged: np.ndarray,
    min_group_rows: int,
    min_group_positives: int,
) -> list[GroupMetrics]:
    """Metrics of each group of one slice column, groups in sorted order (null as ``MISSING``)."""
    names, codes = np.unique(
        values.cast(pl.String).fill_null(MISSING).to_numpy(), return_inverse=True
    )
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=names.size))[:-1]
    groups = []
    for name, rows in zip(names, np.split(order, bounds), strict=True):
        truth, decision = labels[rows], flagged[rows]
        positives = int(truth.sum())
        both = 0 < positives < rows.size
        groups.append(
            GroupMetrics(
                column=column,
                group=str(name),
                rows=int(rows.size),
                positives=positives,
                recall=_ratio(int(np.sum(decision & truth)), positives),
                false_positive_rate=_ratio(int(np.sum(decision & ~truth)), rows.size - positives),
                auroc=float(roc_auc_score(truth, scores[rows])) if both else None,
                gated=rows.size >= min_group_rows and positives >= max(min_group_positives, 1),
            )
        )
    return groups


def timed(call: Callable[[], object], repeats: int, warmup: int = 1) -> np.ndarray:
    """Seconds of each of ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    seconds = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        call()
        seconds[i] = time.perf_counter() - start
    return seconds


def _widest_gap(groups: list[GroupMetrics]) -> tuple[GroupMetrics, GroupMetrics] | None:
    """The gated groups of lowest and highest recall (first in order on ties), if two exist."""
    gated = [g for g in groups if g.gated]
    if len(gated) < 2:
        return None
    return min(gated, key=_recall), max(gated, key=_recall)


def _recall(group: GroupMetrics) -> float:
    """A gated group's recall (it has positives, so it has one)."""
    assert group.recall is not None
    return group.recall


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)
