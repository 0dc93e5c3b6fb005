from __future__ import annotations

from pathlib import Path

import pytest

from jobs.promote import main
from resources.audit import AUDIT_TABLE
from resources.lakehouse import Lakehouse
from resources.tracking import MlflowTracking
from tests.mlflow_fixtures import log_model, mlflow_tracking_fixture, unique  # noqa: F401
from training.registry import CHAMPION


@pytest.fixture
def lake(
    mlflow_tracking: MlflowTracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Lakehouse:
    """The environment a person running the CLI has: the shared MLflow, a lake of their own."""
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "platform"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking.tracking_uri)
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", str(mlflow_tracking.artifact_root))
    monkeypatch.setenv("MODEL_APPROVERS", "alice, bob")
    monkeypatch.setenv("LAKEHOUSE_URI", str(tmp_path / "lake"))
    return Lakehouse(root_uri=str(tmp_path / "lake"))


def version(tracking: MlflowTracking, folder: Path, reasons: list[str]) -> tuple[str, str]:
    registry = tracking.registry(lambda change: None)
    name = unique("fraud")
    number = registry.register(name, log_model(tracking, folder))
    registry.record_gates(name, number, reasons, actor="evaluation", threshold=0.5)
    return name, number


def test_an_approver_promotes_a_version_that_passed(
    mlflow_tracking: MlflowTracking,
    lake: Lakehouse,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, number = version(mlflow_tracking, tmp_path / "model", reasons=[])

    status = main([name, number, "--approver", "alice", "--reason", "beats v0 on AP"])

    assert status == 0
    assert f"{name} version {number} is now {CHAMPION} (was none)" in capsys.readouterr().out
    registry = mlflow_tracking.registry(lambda change: None)
    assert registry.version_of(name, CHAMPION) == number
    row = lake.scan(AUDIT_TABLE).collect().select("model", "version", "actor", "reason").rows()
    assert row == [(name, number, "alice", "beats v0 on AP")]


@pytest.mark.parametrize(
    ("approver", "reasons", "said"),
    [
        ("mallory", [], "MODEL_APPROVERS"),
        ("alice", ["test AUROC 0.61 < 0.80"], "test AUROC 0.61 < 0.80"),
    ],
)
def test_a_refused_promotion_exits_2_and_says_why(
    mlflow_tracking: MlflowTracking,
    lake: Lakehouse,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    approver: str,
    reasons: list[str],
    said: str,
) -> None:
    name, number = version(mlflow_tracking, tmp_path / "model", reasons)

    status = main([name, number, "--approver", approver, "--reason", "ship it"])

    assert status == 2
    assert said in capsys.readouterr().err
    assert mlflow_tracking.registry(lambda change: None).version_of(name, CHAMPION) is None
    assert not lake.exists(AUDIT_TABLE)
