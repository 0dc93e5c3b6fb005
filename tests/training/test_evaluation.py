"""The evaluation engine: thresholds, confusion, calibration, bias gaps, gates, plots, footprint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.training.conftest import COLUMNS, synthetic_frame
from training.data import split_by
from training.evaluation import (
    Evaluation,
    Footprint,
    evaluate,
    footprint,
    gate_reasons,
    threshold_for_precision,
    write_plots,
)
from training.models import Gates
from training.module import Hyperparameters
from training.trainer import MODEL, WEIGHTS, TrainerSettings, fit, load

GATES = Gates(
    min_auroc=0.7,
    min_average_precision=0.3,
    target_precision=0.5,
    max_bias_gap=0.2,
    min_group_rows=50,
    max_latency_ms=50.0,
)
FAST = Footprint(parameters=1000, bytes=4000, p50_ms=0.1, p99_ms=0.2, rows_per_second=1e6)


def _precision(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    flagged = scores >= threshold
    return labels[flagged].mean()


def _random(rows: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores that rank positives higher, on average, than negatives."""
    rng = np.random.default_rng(seed)
    labels = rng.random(rows) < 0.1
    scores = 1 / (1 + np.exp(-(rng.normal(size=rows) + 2.0 * labels - 1.0)))
    return scores, labels


def _evaluation(**changes: object) -> Evaluation:
    """An evaluation that passes ``GATES``, with ``changes`` applied."""
    scores, labels = _random()
    slices = pl.DataFrame({"channel": np.where(np.arange(labels.size) % 2, "web", "app")})
    evaluation = evaluate(scores, labels, slices, GATES.target_precision, GATES.min_group_rows)
    return replace(evaluation, **changes)


def test_threshold_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0])
    # Precision at each threshold: 1, 1, 2/3, 3/4, 3/5, 1/2.
    assert threshold_for_precision(scores, labels, 1.0) == 0.8
    assert threshold_for_precision(scores, labels, 0.75) == 0.6
    assert threshold_for_precision(scores, labels, 0.7) == 0.6
    assert threshold_for_precision(scores, labels, 0.5) == 0.4


def test_threshold_is_the_lowest_that_reaches_the_target() -> None:
    scores, labels = _random()
    for target in (0.3, 0.5, 0.8):
        threshold = threshold_for_precision(scores, labels, target)
        assert _precision(scores, labels, threshold) >= target
        lower = np.unique(scores[scores < threshold])
        assert all(_precision(scores, labels, t) < target for t in lower)


def test_tied_scores_are_flagged_together_whatever_the_row_order() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    assert threshold_for_precision(scores, labels, 0.8) == 0.9
    order = np.array([2, 0, 3, 1])
    assert threshold_for_precision(scores[order], labels[order], 0.8) == 0.9


def test_unreachable_target_gives_the_best_precision() -> None:
    scores = np.array([0.9, 0.8, 0.7])
    labels = np.array([0, 1, 0])
    assert threshold_for_precision(scores, labels, 0.9) == 0.8


def test_confusion_adds_up() -> None:
    scores, labels = _random()
    slices = pl.DataFrame({"channel": ["web"] * labels.size})
    evaluation = evaluate(scores, labels, slices, target_precision=0.5, min_group_rows=50)
    c = evaluation.confusion
    assert c.tp + c.fp + c.tn + c.fn == evaluation.rows == labels.size
    assert c.tp + c.fn == evaluation.positives == labels.sum()
    assert evaluation.precision == pytest.approx(c.tp / (c.tp + c.fp))
    assert evaluation.precision >= 0.5
    assert evaluation.recall == pytest.approx(c.tp / (c.tp + c.fn))
    assert evaluation.false_positive_rate == pytest.approx(c.fp / (c.fp + c.tn))
    assert 0.5 < evaluation.auroc <= 1
    assert sum(rows for _, _, rows in evaluation.calibration) == labels.size
    reused = evaluate(scores, labels, slices, 0.5, 50, threshold=0.25)
    assert reused.threshold == 0.25
    assert reused.confusion.tp + reused.confusion.fp == int(np.sum(scores >= 0.25))


def test_calibration_error() -> None:
    scores = np.array([0.25] * 4 + [0.75] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    slices = pl.DataFrame({"channel": ["web"] * 8})
    calibrated = evaluate(scores, labels, slices, 0.5, 1)
    assert calibrated.calibration_error == pytest.approx(0.0)
    assert calibrated.calibration == ((0.25, 0.25, 4), (0.75, 0.75, 4))

    rng = np.random.default_rng(1)
    labels = rng.random(1000) < 0.5
    overconfident = np.where(rng.random(1000) < 0.5, 0.99, 0.01)  # sure, and right by chance
    slices = pl.DataFrame({"channel": ["web"] * 1000})
    assert evaluate(overconfident, labels, slices, 0.5, 1).calibration_error > 0.4


def test_bias_gap_between_groups_with_different_recall() -> None:
    # Group a: every positive flagged; b: half of them; c: none, but too small to gate;
    # d: large, but without positives.
    parts = {
        "a": ([0.9] * 20 + [0.1] * 180, [1] * 20 + [0] * 180),
        "b": ([0.9] * 10 + [0.1] * 190, [1] * 20 + [0] * 180),
        "c": ([0.1] * 10, [1] * 5 + [0] * 5),
        "d": ([0.1] * 100, [0] * 100),
    }
    scores = np.concatenate([np.array(s) for s, _ in parts.values()])
    labels = np.concatenate([np.array(y) for _, y in parts.values()])
    groups = [name for name, (s, _) in parts.items() for _ in s]
    slices = pl.DataFrame({"segment": groups, "constant": ["x"] * len(groups)})
    evaluation = evaluate(scores, labels, slices, 0.5, min_group_rows=50, threshold=0.5)

    by_group = {(g.column, g.group): g for g in evaluation.groups}
    assert by_group["segment", "a"].recall == 1.0
    assert by_group["segment", "b"].recall == 0.5
    assert by_group["segment", "c"].recall == 0.0
    assert by_group["segment", "d"].recall is None
    assert [g.group for g in evaluation.groups if g.gated] == ["a", "b", "x"]
    assert evaluation.bias_gaps == {"segment": 0.5, "constant": 0.0}

    reasons = gate_reasons(evaluation, FAST, replace(GATES, min_auroc=0.0), None)
    assert reasons == [
        "recall on segment differs by 0.500 (more than 0.200) between 'a' (1.000) and 'b' (0.500)"
    ]


def test_groups_with_few_positives_are_reported_but_not_gated() -> None:
    # 0.80 of 5 frauds against 0.14 of 7: the demo's noise, not a bias.
    parts = {
        "PL": ([0.9] * 4 + [0.1] * 296, [1] * 5 + [0] * 295),
        "DE": ([0.9] * 1 + [0.1] * 299, [1] * 7 + [0] * 293),
        "FR": ([0.9] * 20 + [0.1] * 280, [1] * 25 + [0] * 275),
    }
    scores = np.concatenate([np.array(s) for s, _ in parts.values()])
    labels = np.concatenate([np.array(y) for _, y in parts.values()])
    slices = pl.DataFrame({"country": [name for name, (s, _) in parts.items() for _ in s]})
    evaluation = evaluate(
        scores, labels, slices, 0.5, min_group_rows=100, threshold=0.5, min_group_positives=20
    )
    by_group = {g.group: g for g in evaluation.groups}
    assert (by_group["PL"].recall, by_group["DE"].recall) == (0.8, 1 / 7)
    assert [g.group for g in evaluation.groups if g.gated] == ["FR"]
    assert evaluation.bias_gaps == {"country": 0.0}


def test_gate_reasons_list_exactly_the_failing_gates() -> None:
    assert gate_reasons(_evaluation(), FAST, GATES, None) == []
    failing = _evaluation(auroc=0.65, precision=0.4, bias_gaps={"channel": 0.3})
    slow = replace(FAST, p99_ms=80.0)
    reasons = gate_reasons(failing, slow, GATES, None)
    assert [reason.split()[0] for reason in reasons] == ["auroc", "precision", "recall", "p99"]
    assert reasons[0] == "auroc 0.650 is below the minimum 0.700"
    assert "exceeds 50.00 ms" in reasons[3]
    low_ap = gate_reasons(_evaluation(average_precision=0.2), FAST, GATES, None)
    assert low_ap == ["average_precision 0.200 is below the minimum 0.300"]


def test_a_better_champion_fails_the_gate() -> None:
    challenger = _evaluation(average_precision=0.412)
    champion = _evaluation(average_precision=0.455)
    assert gate_reasons(challenger, FAST, GATES, champion, champion_version="3") == [
        "average_precision 0.412 is below the champion's 0.455 (version 3) on the same test rows"
    ]
    assert gate_reasons(champion, FAST, GATES, challenger) == []
    tolerant = replace(GATES, champion_tolerance=0.05)
    assert gate_reasons(challenger, FAST, tolerant, champion) == []
    on_auroc = replace(GATES, compared_on="auroc")
    assert gate_reasons(challenger, FAST, on_auroc, champion) == []
    with pytest.raises(ValueError, match="same test rows"):
        gate_reasons(challenger, FAST, GATES, replace(champion, rows=champion.rows + 1))


def test_json_and_summary_are_plain() -> None:
    evaluation = _evaluation()
    data = evaluation.to_json()
    assert data["confusion"] == {
        "tp": evaluation.confusion.tp,
        "fp": evaluation.confusion.fp,
        "tn": evaluation.confusion.tn,
        "fn": evaluation.confusion.fn,
    }
    assert [g["group"] for g in data["groups"]] == ["app", "web"]
    summary = evaluation.summary()
    assert all(type(value) is float for value in summary.values())
    assert summary["bias_gap_channel"] == evaluation.bias_gaps["channel"]


def test_plots_are_pngs(tmp_path: Path) -> None:
    scores, labels = _random()
    evaluation = _evaluation()
    paths = write_plots(scores, labels, evaluation, tmp_path / "plots")
    assert [p.name for p in paths] == [
        "roc.png",
        "precision_recall.png",
        "confusion.png",
        "calibration.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in paths)


@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated")
def test_footprint(tmp_path: Path) -> None:
    splits = split_by(synthetic_frame())
    hyperparameters = Hyperparameters(epochs=2, batch_size=256)
    fit(splits, COLUMNS, hyperparameters, TrainerSettings(accelerator="cpu", devices=1), tmp_path)
    measured = footprint(load(tmp_path), tmp_path, splits.test, repeats=50)
    assert measured.parameters > 0
    assert measured.bytes == sum((tmp_path / name).stat().st_size for name in (WEIGHTS, MODEL))
    assert 0 < measured.p50_ms <= measured.p99_ms
    assert measured.rows_per_second > 0
