"""The MLflow model registry as the platform uses it: versions, gates, aliases, approvals.

A trained model is a plain folder (``weights.pt`` and ``model.json``, see ``training.trainer``)
logged to its run with ``log_artifacts`` and registered as a version of the registered model of
the same name. Which version does what is said with aliases, never with the deprecated stages:
a version whose gates passed becomes ``challenger``; ``champion`` (what serving loads) moves only
by ``promote`` (a person named in ``MODEL_APPROVERS``) or ``auto_promote`` (the model's policy),
and only to a version whose gates passed. Every alias move is handed to an audit callback, so
who moved what, when and from which version is on record.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
"""The version serving loads."""
CHALLENGER = "challenger"
"""The latest version whose gates passed, waiting for approval."""
GATES_TAG = "gates"
"""Version tag: ``passed`` or ``failed``."""
GATE_REASONS_TAG = "gate_reasons"
"""Version tag: why gates failed, joined with ``; ``; empty when they passed."""
THRESHOLD_TAG = "decision_threshold"
"""Version tag: the score from which serving flags a payment, as the evaluation chose it."""
PASSED = "passed"
FAILED = "failed"
AUTO_PROMOTE_ACTOR = "policy:auto_promote"
APPROVERS_SETTING = "MODEL_APPROVERS"
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
"""Error codes MLflow answers with for an unknown model, version or alias (or a version that
is not a number)."""


class PromotionRefused(Exception):
    """A version may not become ``champion``; the message says why and what would allow it."""


@dataclass(frozen=True)
class AliasChange:
    """One move of an alias, as the audit table records it."""

    model: str
    alias: str
    version: str
    previous_version: str | None
    actor: str
    reason: str
    at: datetime
    """When, in UTC without a time zone (as the lake stores timestamps)."""

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


class ModelRegistry:
    """Registered models, their versions and aliases, over an ``MlflowClient``."""

    def __init__(self, client: MlflowClient, audit: Callable[[AliasChange], None]) -> None:
        self._client = client
        self._audit = audit

    def register(
        self,
        name: str,
        run_id: str,
        artifact_path: str = "model",
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Register the folder ``artifact_path`` of run ``run_id`` as a new version of ``name``
        (created on first use); the version number, as a string."""
        try:
            self._client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        run = self._client.get_run(run_id)
        version = self._client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/{artifact_path}",
            run_id=run_id,
            tags=dict(tags or {}),
        )
        return str(version.version)

    def version_of(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at; None if it points nowhere or the model is unknown."""
        try:
            return str(self._client.get_model_version_by_alias(name, alias).version)
        except MlflowException as error:
            if error.error_code in _MISSING:
                return None
            raise

    def record_gates(
        self, name: str, version: str, reasons: Sequence[str], actor: str, threshold: float
    ) -> AliasChange | None:
        """Tag the version with its gate outcome (``reasons`` empty means passed) and its decision
        threshold; a version that passed becomes ``challenger``, and the change is returned."""
        passed = not reasons
        self._client.set_model_version_tag(name, version, THRESHOLD_TAG, repr(float(threshold)))
        self._client.set_model_version_tag(name, version, GATES_TAG, PASSED if passed else FAILED)
        self._client.set_model_version_tag(name, version, GATE_REASONS_TAG, "; ".join(reasons))
        if not passed:
            return None
        return self.set_alias(name, CHALLENGER, version, actor, "every gate passed")

    def set_alias(
        self, name: str, alias: str, version: str, actor: str, reason: str
    ) -> AliasChange:
        """Point ``alias`` at ``version``, then audit the move (so the audit only records moves
        that happened)."""
        previous = self.version_of(name, alias)
        self._client.set_registered_model_alias(name, alias, version)
        change = AliasChange(
            model=name,
            alias=alias,
            version=str(version),
            previous_version=previous,
            actor=actor,
            reason=reason,
            at=datetime.now(UTC).replace(tzinfo=None),
        )
        self._audit(change)
        return change

    def promote(
        self, name: str, version: str, approver: str, allowed: Collection[str], reason: str
    ) -> AliasChange:
        """Make ``version`` the ``champion`` on ``approver``'s approval.

        Raises ``PromotionRefused`` if the approver is not in ``allowed`` (``MODEL_APPROVERS``),
        the version does not exist, or its gates did not pass.
        """
        if approver not in allowed:
            listed = ", ".join(sorted(allowed)) or "nobody"
            raise PromotionRefused(
                f"refusing to promote {name} version {version} to {CHAMPION}: {approver!r} is not "
                f"an approver. {APPROVERS_SETTING} (comma-separated) allows: {listed}."
            )
        self._require_passed(name, version)
        return self.set_alias(name, CHAMPION, version, approver, reason)

    def auto_promote(self, name: str, version: str, reason: str) -> AliasChange:
        """Make ``version`` the ``champion`` by the model's own policy, if its gates passed."""
        self._require_passed(name, version)
        return self.set_alias(name, CHAMPION, version, AUTO_PROMOTE_ACTOR, reason)

    def threshold(self, name: str, version: str) -> float:
        """The decision threshold the version's evaluation recorded."""
        value = self._client.get_model_version(name, version).tags.get(THRESHOLD_TAG)
        if value is None:
            raise LookupError(f"{name} version {version} has no {THRESHOLD_TAG!r}: not evaluated")
        return float(value)

    def download(self, name: str, version: str, destination: Path) -> Path:
        """Copy the version's model folder under ``destination``; the local folder holding
        ``model.json``."""
        source = self._client.get_model_version(name, version).source
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(destination), tracking_uri=self._client.tracking_uri
        )
        return Path(local)

    def _require_passed(self, name: str, version: str) -> None:
        try:
            found = self._client.get_model_version(name, version)
        except MlflowException as error:
            if error.error_code not in _MISSING:
                raise
            raise PromotionRefused(
                f"refusing to promote {name} version {version} to {CHAMPION}: no such version "
                f"({error.message})"
            ) from error
        gates = found.tags.get(GATES_TAG)
        if gates != PASSED:
            why = (
                f"its gates failed: {found.tags.get(GATE_REASONS_TAG) or 'no reason recorded'}"
                if gates == FAILED
                else "its gates were never recorded"
            )
            raise PromotionRefused(
                f"refusing to promote {name} version {version} to {CHAMPION}: {why}"
            )
