"""What a Bento carries besides code: the served versions, their thresholds and model files.

``bundle/bundle.json`` names the deployment, the model, the runtime and batching it was built
with and, per arm, the registered version, the decision threshold its evaluation chose and the
folder holding its files (the saved model and its ONNX exports, see ``serving.edge``). The service
reads nothing else about models, so a Bento serves exactly what it was built with, whatever the
registry or the declaration say later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from serving.deployments import Batching
from serving.edge import Runtime, Scorer, load_scorer
from serving.routing import Arm

BUNDLE_FILE = "bundle.json"


@dataclass(frozen=True)
class BundledModel:
    arm: Arm
    version: str
    threshold: float
    folder: str
    """Relative to the bundle's directory."""


@dataclass(frozen=True)
class ServedModel:
    """One arm, loaded."""

    version: str
    threshold: float
    scorer: Scorer


@dataclass(frozen=True)
class Bundle:
    deployment: str
    model: str
    models: tuple[BundledModel, ...]
    runtime: Runtime
    batching: Batching

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / BUNDLE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, directory: Path) -> Bundle:
        data = json.loads((directory / BUNDLE_FILE).read_text())
        models = tuple(BundledModel(**m) for m in data.pop("models"))
        return cls(models=models, batching=Batching(**data.pop("batching")), **data)

    def load(self, directory: Path) -> dict[Arm, ServedModel]:
        """Every arm's scorer; a missing export fails here, at start-up."""
        return {
            m.arm: ServedModel(
                m.version, m.threshold, load_scorer(directory / m.folder, self.runtime)
            )
            for m in self.models
        }
