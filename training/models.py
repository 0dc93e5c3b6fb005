"""Models as declarations: what to train on, how, what to tune, and what a version must pass.

A ``Model`` (one file in ``assets/models/``) names its training set, the columns the network
reads, the starting hyperparameters and the search space a study explores, the validation metric
the study maximizes, the slices its fairness is measured on, and the gates a trained version must
pass before it may serve. The factory (``factories.models``) turns it into the assets
``training/<name>_study``, ``models/<name>`` and ``evaluation/<name>``. Nothing here knows Dagster,
MLflow or the declarations in ``assets/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from training.data import Columns
from training.module import Hyperparameters

METRICS = ("validation_auroc", "validation_average_precision")
"""What a study may maximize: the per-epoch validation scores the Lightning module logs."""


@dataclass(frozen=True)
class FloatRange:
    """A float between ``low`` and ``high``; ``log`` samples evenly in orders of magnitude."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        finite = math.isfinite(self.low) and math.isfinite(self.high)
        if not finite or not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"bad float range [{self.low}, {self.high}] (log={self.log})")


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1

    def __post_init__(self) -> None:
        if not self.low < self.high or self.step < 1:
            raise ValueError(f"bad int range [{self.low}, {self.high}] step {self.step}")


@dataclass(frozen=True)
class Choice:
    """One of ``values``; tuples (a hidden layout) are allowed."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a choice needs at least one value")


Parameter = FloatRange | IntRange | Choice


@dataclass(frozen=True)
class Study:
    """How ``training/<model>_study`` searches: trials, epochs per trial, the sampler's seed."""

    trials: int = 20
    epochs: int = 5
    """Epochs of every trial; the median pruner may stop a trial after any of them."""
    warmup_epochs: int = 1
    """Epochs every trial runs before the pruner may stop it."""
    startup_trials: int = 3
    """Trials that always run to the end, so the median has something to compare with."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trials < 1 or not 1 <= self.warmup_epochs <= self.epochs:
            raise ValueError(
                f"a study needs trials >= 1 and 1 <= warmup_epochs <= epochs, got {self}"
            )


@dataclass(frozen=True)
class Gates:
    """What a version must show on the test split to become ``challenger``.

    ``champion`` also needs the version to be at least as good as the current champion on the
    same test split (by ``compared_on``, less ``champion_tolerance``), and then an approval or an
    auto-promote policy.
    """

    min_auroc: float
    min_average_precision: float
    target_precision: float
    """The decision threshold is the lowest score whose precision reaches this."""
    max_bias_gap: float
    """Largest allowed difference in recall at the threshold between two groups of a slice."""
    min_group_rows: int = 100
    """Groups of a slice with fewer test rows are reported, not gated."""
    min_group_positives: int = 20
    """Groups with fewer positives on the test split are reported, not gated: recall over 7
    frauds moves in steps of 0.14 and its 95% interval is about ±0.35, as wide as a gap gate, so
    a gap between two such groups is noise (seen on the demo's data: 0.80 of 5 against 0.14 of
    7)."""
    max_latency_ms: float = 50.0
    """p99 forward latency of one row on CPU."""
    compared_on: Literal["auroc", "average_precision"] = "average_precision"
    champion_tolerance: float = 0.0

    def __post_init__(self) -> None:
        for name in ("min_auroc", "min_average_precision", "target_precision"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"gate {name} must lie in [0, 1]")


@dataclass(frozen=True)
class Model:
    """One model, declared: the MLflow registered model ``<name>`` and its three assets."""

    name: str
    training_set: str
    """The ``TrainingSet`` whose table it trains on."""
    columns: Columns
    hyperparameters: Hyperparameters
    search_space: Mapping[str, Parameter]
    """Hyperparameters a study varies, by their ``Hyperparameters`` field name."""
    gates: Gates
    slices: tuple[str, ...]
    """Columns of the training set whose groups are compared for bias (country, channel, ...)."""
    owner: str
    description: str = ""
    metric: str = "validation_average_precision"
    """What the study maximizes, one of ``METRICS``."""
    study: Study = field(default_factory=Study)
    auto_promote: bool = False
    """Promote a version that passes every gate and beats the champion to ``champion`` without
    an approval. Off by default: a person with the right signs off."""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"model {self.name!r}: metric must be one of {METRICS}")
        fields = set(Hyperparameters.__dataclass_fields__)
        unknown = sorted(set(self.search_space) - fields)
        if unknown:
            raise ValueError(
                f"model {self.name!r}: search space names unknown hyperparameters {unknown}; "
                f"known: {sorted(fields)}"
            )

    @property
    def study_table(self) -> str:
        return f"training/{self.name}_study"

    @property
    def model_table(self) -> str:
        return f"models/{self.name}"

    @property
    def evaluation_table(self) -> str:
        return f"evaluation/{self.name}"

    def inputs(self) -> Sequence[str]:
        """Every training set column the model and its evaluation read."""
        c = self.columns
        return list(dict.fromkeys([*c.categorical, *c.numeric, c.label, *self.slices]))
