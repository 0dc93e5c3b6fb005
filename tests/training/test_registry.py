from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from resources.audit import AUDIT_TABLE, registry_audit
from resources.lakehouse import Lakehouse
from resources.tracking import MlflowTracking
from tests.mlflow_fixtures import (  # noqa: F401
    MODEL_FILES,
    log_model,
    mlflow_tracking_fixture,
    unique,
)
from training.registry import (
    CHALLENGER,
    CHAMPION,
    GATE_REASONS_TAG,
    GATES_TAG,
    AliasChange,
    ModelRegistry,
    PromotionRefused,
)

APPROVERS = ("alice", "bob")


@pytest.fixture
def changes() -> list[AliasChange]:
    return []


@pytest.fixture
def registry(mlflow_tracking: MlflowTracking, changes: list[AliasChange]) -> ModelRegistry:
    return mlflow_tracking.registry(changes.append)


def registered(
    tracking: MlflowTracking, registry: ModelRegistry, folder: Path, name: str | None = None
) -> tuple[str, str]:
    """A new version of ``name`` (a fresh model if None): the name and the version."""
    name = name or unique("fraud")
    return name, registry.register(name, log_model(tracking, folder))


def test_a_registered_version_downloads_as_the_files_that_were_logged(
    mlflow_tracking: MlflowTracking, registry: ModelRegistry, tmp_path: Path
) -> None:
    name, first = registered(mlflow_tracking, registry, tmp_path / "v1")
    _, second = registered(mlflow_tracking, registry, tmp_path / "v2", name)

    folder = registry.download(name, second, tmp_path / "downloaded")

    assert (first, second) == ("1", "2")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == MODEL_FILES


def test_a_version_that_failed_its_gates_is_no_challenger_and_cannot_be_promoted(
    mlflow_tracking: MlflowTracking,
    registry: ModelRegistry,
    changes: list[AliasChange],
    tmp_path: Path,
) -> None:
    name, version = registered(mlflow_tracking, registry, tmp_path)
    reasons = ["test AUROC 0.61 < 0.80", "recall gap 0.12 > 0.05 on country"]

    assert registry.record_gates(name, version, reasons, actor="evaluation", threshold=0.5) is None
    with pytest.raises(PromotionRefused) as refused:
        registry.promote(name, version, "alice", APPROVERS, reason="looks fine to me")

    assert "test AUROC 0.61 < 0.80; recall gap 0.12 > 0.05 on country" in str(refused.value)
    assert f"{name} version {version}" in str(refused.value)
    tags = mlflow_tracking.client().get_model_version(name, version).tags
    assert (tags[GATES_TAG], tags[GATE_REASONS_TAG]) == ("failed", "; ".join(reasons))
    assert registry.version_of(name, CHALLENGER) is None
    assert registry.version_of(name, CHAMPION) is None
    assert changes == []


def test_a_version_whose_gates_were_never_recorded_cannot_be_promoted(
    mlflow_tracking: MlflowTracking, registry: ModelRegistry, tmp_path: Path
) -> None:
    name, version = registered(mlflow_tracking, registry, tmp_path)

    with pytest.raises(PromotionRefused, match="never recorded"):
        registry.auto_promote(name, version, reason="beats the champion")


def test_a_version_that_passed_becomes_challenger_and_the_move_is_audited(
    mlflow_tracking: MlflowTracking,
    registry: ModelRegistry,
    changes: list[AliasChange],
    tmp_path: Path,
) -> None:
    name, version = registered(mlflow_tracking, registry, tmp_path)

    change = registry.record_gates(name, version, [], actor="evaluation", threshold=0.8125)

    assert registry.version_of(name, CHALLENGER) == version
    assert registry.threshold(name, version) == 0.8125
    assert change is not None
    assert (change.alias, change.version, change.previous_version, change.actor) == (
        CHALLENGER,
        version,
        None,
        "evaluation",
    )
    assert changes == [change]


def test_an_approver_not_on_the_list_is_refused_and_told_where_the_list_lives(
    mlflow_tracking: MlflowTracking, registry: ModelRegistry, tmp_path: Path
) -> None:
    name, version = registered(mlflow_tracking, registry, tmp_path)
    registry.record_gates(name, version, [], actor="evaluation", threshold=0.5)

    with pytest.raises(PromotionRefused) as refused:
        registry.promote(name, version, "mallory", APPROVERS, reason="ship it")

    message = str(refused.value)
    assert "'mallory' is not an approver" in message
    assert "MODEL_APPROVERS" in message
    assert "alice, bob" in message
    assert registry.version_of(name, CHAMPION) is None


def test_an_unknown_version_is_refused(
    mlflow_tracking: MlflowTracking, registry: ModelRegistry, tmp_path: Path
) -> None:
    name, _ = registered(mlflow_tracking, registry, tmp_path)

    with pytest.raises(PromotionRefused, match="no such version"):
        registry.promote(name, "7", "alice", APPROVERS, reason="ship it")


def test_an_approved_promotion_moves_champion_and_lands_in_the_audit_table(
    mlflow_tracking: MlflowTracking, tmp_path: Path
) -> None:
    lakehouse = Lakehouse(root_uri=str(tmp_path / "lake"))
    registry = mlflow_tracking.registry(registry_audit(lakehouse))
    name, first = registered(mlflow_tracking, registry, tmp_path / "v1")
    _, second = registered(mlflow_tracking, registry, tmp_path / "v2", name)
    for version in (first, second):
        registry.record_gates(name, version, [], actor="evaluation", threshold=0.5)
    before = datetime.now(UTC).replace(tzinfo=None)

    registry.auto_promote(name, first, reason="first version")
    change = registry.promote(name, second, "bob", APPROVERS, reason="better on every slice")

    assert registry.version_of(name, CHAMPION) == second
    audit = lakehouse.scan(AUDIT_TABLE).filter(pl.col("alias") == CHAMPION).sort("at").collect()
    assert audit.select("version", "previous_version", "actor", "reason").rows() == [
        (first, None, "policy:auto_promote", "first version"),
        (second, first, "bob", "better on every slice"),
    ]
    assert audit["at"].to_list()[-1] == change.at
    assert before <= change.at <= datetime.now(UTC).replace(tzinfo=None)
