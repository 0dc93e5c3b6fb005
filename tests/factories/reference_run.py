"""The seeded reference run the model and deployment tests share: 14 days ingested and relabelled,
then the fraud scorer studied, trained with DDP on two CPU processes and evaluated."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from definitions import build_definitions
from reference_data import GeneratorConfig, generate
from resources import Lakehouse, Settings, build_resources
from resources.audit import registry_audit
from tests.conftest import TEST_KEY, days_of
from training.registry import ModelRegistry

DATA = GeneratorConfig(
    seed=5,
    start=date(2024, 5, 1),
    days=14,
    customers=2_000,
    merchants=150,
    transactions_per_day=5_000,
    drift_start_day=None,
)
CUTOFF = datetime(2024, 5, 15)
"""The end of the last day, as a run right after it would see the labels: payments of the first
seven days are in (label delay: seven days), with the chargebacks filed by then."""


@dataclass
class Trained:
    settings: Settings
    defs: dg.Definitions
    instance: dg.DagsterInstance
    result: dg.ExecuteInProcessResult

    def metadata(self, node: str) -> dict[str, object]:
        [materialization] = self.result.asset_materializations_for_node(node)
        return {k: v.value for k, v in materialization.metadata.items()}

    def client(self) -> MlflowClient:
        uri = self.settings.mlflow_tracking_uri
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def lakehouse(self) -> Lakehouse:
        return Lakehouse(root_uri=self.settings.lakehouse_uri)

    def registry(self) -> ModelRegistry:
        return build_resources(self.settings)["mlflow"].registry(registry_audit(self.lakehouse()))


@contextmanager
def trained_platform(
    home: Path,
    trials: int,
    environment: dict[str, str] | None = None,
    data: GeneratorConfig = DATA,
) -> Iterator[Trained]:
    """The reference run in ``home``; ``environment`` adds settings (and their variables),
    ``data`` more days (trained with the same cutoff)."""
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("PSEUDONYMIZATION_KEY", TEST_KEY)
        for name, value in (environment or {}).items():
            mp.setenv(name, value)
        settings = Settings.from_env(
            {
                "PLATFORM_HOME": str(home),
                "TRAINING_ACCELERATOR": "cpu",
                "TRAINING_DEVICES": "2",
                "TRAINING_STRATEGY": "ddp",
                "MODEL_APPROVERS": "alice,bob",
                **(environment or {}),
            }
        )
        generate(data, Path(settings.landing_uri))
        defs = build_definitions(settings)
        # Ingest every day, then relabel each with the chargebacks that landed after it.
        for job in ("daily_ingest", "relabel_gold"):
            for day in days_of(data):
                run = defs.resolve_job_def(job).execute_in_process(
                    partition_key=day, instance=instance
                )
                assert run.success
        result = defs.resolve_job_def("train_fraud_scorer").execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "training__fraud": {"config": {"cutoff": CUTOFF.isoformat()}},
                    "training__fraud_scorer_study": {"config": {"trials": trials}},
                }
            },
        )
        assert result.success
        yield Trained(settings, defs, instance, result)
