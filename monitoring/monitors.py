"""Monitors as declarations: what to watch of a deployment, against what, and what drift sets off.

A ``Monitor`` (one file in ``assets/monitors/``) names the deployment it watches. The factory
(``factories.monitors``) turns it into a reference profile of the champion's training window, a
whylogs profile of every scored day, a daily drift report against the reference, and the
realized performance once labels arrive; the drift sensor (``sensors.drift``) requests one
retraining of the deployment's model when a day's report reaches ``retrain_on``, at most once per
``cooldown``. Nothing here imports whylogs or Dagster: a declaration stays a plain object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

Severity = Literal["critical", "warning", "info"]
PREDICTION = "probability"
"""The score's column in a deployment's batch scores: its drift is prediction drift."""


@dataclass(frozen=True)
class Monitor:
    """One deployment watched: the assets ``monitoring/<name>_*`` and the drift sensor's rule."""

    name: str
    deployment: str
    """The ``Deployment`` whose daily scores (features as served, and scores) are watched."""
    owner: str
    description: str = ""
    features: tuple[str, ...] = ()
    """The columns to profile, of the model's inputs and ``probability``; empty: every input
    but the event's id and time, and ``probability``."""
    reference_days: int = 14
    """The reference is the last this many days of the champion's training set before its test
    days; each of those days is also a stationary day the drift thresholds are calibrated on."""
    margin: float = 1.5
    """A threshold is this times the largest effect size the reference's own days show."""
    retrain_on: Severity = "critical"
    """The severity of a day's worst finding that requests a retraining."""
    cooldown: timedelta = timedelta(days=7)
    """After a requested retraining, drift requests no other for this long (in days scored)."""
    label_source: str = "chargebacks"
    """The source table whose fraud rows label the scored transactions, late."""
    label_window: timedelta = timedelta(days=45)
    """How late a label may arrive: a day's realized performance is final after this."""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"monitor {self.name!r}: its name must be an identifier")
        if self.reference_days < 2:
            raise ValueError(f"monitor {self.name!r}: reference_days must be at least 2")
        if self.margin < 1:
            raise ValueError(f"monitor {self.name!r}: margin {self.margin} must be at least 1")
        if self.retrain_on not in ("critical", "warning"):
            raise ValueError(f"monitor {self.name!r}: retrain_on must be critical or warning")

    @property
    def reference_table(self) -> str:
        return f"monitoring/{self.name}_reference"

    @property
    def profiles_table(self) -> str:
        return f"monitoring/{self.name}_profiles"

    @property
    def drift_table(self) -> str:
        return f"monitoring/{self.name}_drift_report"

    @property
    def performance_table(self) -> str:
        return f"monitoring/{self.name}_performance"
