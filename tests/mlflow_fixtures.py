"""One real MLflow backend (SQLite) for the whole session, and models logged to it.

Creating MLflow's SQLite schema takes seconds, so tests share one database and keep apart by
unique experiment and model names. To use the ``mlflow_tracking`` fixture in a test module,
import ``mlflow_tracking_fixture`` into it (the name differs so that ruff sees no redefinition).
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import pytest

from resources.tracking import MlflowTracking

MODEL_FILES = {"model.json": b'{"columns": {}}', "weights.pt": b"\x80\x02tensors"}


@pytest.fixture(scope="session", name="mlflow_tracking")
def mlflow_tracking_fixture(tmp_path_factory: pytest.TempPathFactory) -> MlflowTracking:
    # Each importing module gets its own copy of this fixture, so the place is fixed, not fresh:
    # the copies share one database, whose schema (and MLflow's store for it) is made once.
    root = tmp_path_factory.getbasetemp() / "mlflow"
    root.mkdir(exist_ok=True)
    tracking = MlflowTracking(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts")
    )
    with warnings.catch_warnings():
        # MLflow's own SQLAlchemy mappers use a loader SQLAlchemy deprecates: noise, not ours.
        warnings.filterwarnings("ignore", "The ``noload`` loader strategy", DeprecationWarning)
        tracking.client().search_experiments(max_results=1)  # creates the schema once
    return tracking


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def log_model(tracking: MlflowTracking, folder: Path, files: dict[str, bytes] = MODEL_FILES) -> str:
    """A finished run of a fresh experiment whose artifact ``model/`` holds ``files``; its id."""
    client = tracking.client()
    run = client.create_run(tracking.experiment_id(unique("experiment")))
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    client.set_terminated(run.info.run_id)
    return run.info.run_id
