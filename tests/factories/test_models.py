"""A declared model end to end on the seeded reference data: study, DDP training through Pipes,
registration, evaluation against the baseline and the champion, gates and approval."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from assets.models.fraud_scorer import FRAUD_SCORER
from assets.training.fraud import FRAUD
from definitions import build_definitions
from factories.models import model_assets
from reference_data import GeneratorConfig, generate
from resources import Lakehouse, Settings, build_resources
from resources.audit import AUDIT_TABLE, registry_audit
from resources.trainer import StudyStorage
from tests.conftest import TEST_KEY, days_of
from training.registry import CHALLENGER, CHAMPION, ModelRegistry, PromotionRefused

pytestmark = [
    # Raised inside Dagster's Pipes client and Lightning's loader, not by this code.
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
]

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
TRIALS = 3
# Measured on DATA (3 trials, DDP on two CPU processes): the network's test AUROC 0.963 and
# average precision 0.168 (33 positives among 5,218 test rows); LightGBM's 0.905 and 0.448. The
# margins absorb platform noise only: the network ranks better overall, the trees better at the top.
MIN_AUROC, MIN_AVERAGE_PRECISION = 0.93, 0.12
MIN_BASELINE_AUROC, MIN_BASELINE_AVERAGE_PRECISION = 0.87, 0.38


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

    def registry(self) -> ModelRegistry:
        lakehouse = Lakehouse(root_uri=self.settings.lakehouse_uri)
        return build_resources(self.settings)["mlflow"].registry(registry_audit(lakehouse))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("PSEUDONYMIZATION_KEY", TEST_KEY)
        home = tmp_path_factory.mktemp("platform")
        settings = Settings.from_env(
            {
                "PLATFORM_HOME": str(home),
                "TRAINING_ACCELERATOR": "cpu",
                "TRAINING_DEVICES": "2",
                "TRAINING_STRATEGY": "ddp",
                "MODEL_APPROVERS": "alice,bob",
            }
        )
        generate(DATA, Path(settings.landing_uri))
        defs = build_definitions(settings)
        # Ingest every day, then relabel each with the chargebacks that landed after it.
        for job in ("daily_ingest", "relabel_gold"):
            for day in days_of(DATA):
                run = defs.resolve_job_def(job).execute_in_process(
                    partition_key=day, instance=instance
                )
                assert run.success
        result = defs.resolve_job_def("train_fraud_scorer").execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "training__fraud": {"config": {"cutoff": CUTOFF.isoformat()}},
                    "training__fraud_scorer_study": {"config": {"trials": TRIALS}},
                }
            },
        )
        assert result.success
        yield Trained(settings, defs, instance, result)


def test_ddp_through_pipes_registers_one_version_with_its_metrics(trained: Trained) -> None:
    model = trained.metadata("models__fraud_scorer")
    assert model["model_version"] == "1"
    assert model["model_uri"] == "models:/fraud_scorer/1"
    assert model["hyperparameters_from"] == "study"
    assert 0.5 < model["test_auroc"] <= 1
    client = trained.client()
    [version] = client.search_model_versions("name='fraud_scorer'")
    assert version.run_id == model["mlflow_run_id"]
    run = client.get_run(version.run_id)
    assert run.data.tags["training_set_version"] == str(model["training_set_version"])
    assert run.data.tags["mlflow.source.git.commit"]
    assert (
        set(run.data.tags["training_set_inputs"])
        and "gold/labeled_transactions" in (run.data.tags["training_set_inputs"])
    )
    epochs = FRAUD_SCORER.hyperparameters.epochs
    assert len(client.get_metric_history(run.info.run_id, "validation_auroc")) == epochs
    assert run.data.params["devices"] == "2" and run.data.params["strategy"] == "ddp"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/roc.png", "evaluation/calibration.png"} <= artifacts


def test_the_study_ran_its_trials_as_nested_runs(trained: Trained) -> None:
    study = trained.metadata("training__fraud_scorer_study")
    assert study["trials"] == TRIALS
    client = trained.client()
    parent = study["mlflow_run_id"]
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
    )
    assert len(children) == TRIALS


def test_the_model_beats_its_floor_and_is_reported_beside_the_baseline(trained: Trained) -> None:
    evaluation = trained.metadata("evaluation__fraud_scorer")
    assert evaluation["auroc"] >= MIN_AUROC
    assert evaluation["average_precision"] >= MIN_AVERAGE_PRECISION
    assert evaluation["baseline_auroc"] >= MIN_BASELINE_AUROC
    assert evaluation["baseline_average_precision"] >= MIN_BASELINE_AVERAGE_PRECISION
    assert evaluation["auroc"] > evaluation["baseline_auroc"]
    assert evaluation["champion_version"] == "none"
    [check] = trained.result.get_asset_check_evaluations()
    assert check.passed, check.description
    assert trained.registry().version_of("fraud_scorer", CHALLENGER) == "1"


def test_promotion_needs_an_allowed_approver_and_is_audited(trained: Trained) -> None:
    registry = trained.registry()
    with pytest.raises(PromotionRefused, match="MODEL_APPROVERS"):
        registry.promote("fraud_scorer", "1", "mallory", ("alice", "bob"), "looks fine")
    assert registry.version_of("fraud_scorer", CHAMPION) is None
    change = registry.promote("fraud_scorer", "1", "alice", ("alice", "bob"), "reviewed")
    assert (change.alias, change.version, change.actor) == (CHAMPION, "1", "alice")
    audit = Lakehouse(root_uri=trained.settings.lakehouse_uri).scan(AUDIT_TABLE).collect()
    assert audit.filter(alias=CHAMPION)["actor"].to_list() == ["alice"]


def test_a_model_worse_than_the_champion_is_not_promoted(trained: Trained, tmp_path: Path) -> None:
    worse = replace(
        FRAUD_SCORER,
        hyperparameters=replace(FRAUD_SCORER.hyperparameters, epochs=1, learning_rate=1e-6),
    )
    registry = trained.registry()
    if registry.version_of("fraud_scorer", CHAMPION) is None:
        registry.promote("fraud_scorer", "1", "alice", ("alice",), "reviewed")
    resources = {
        **build_resources(trained.settings),
        # A fresh study store: no tuned parameters, so the worse declaration's are used.
        "studies": StudyStorage(url=f"sqlite:///{tmp_path / 'optuna.db'}"),
    }
    _, model, evaluation = model_assets(worse, FRAUD)
    result = dg.materialize(
        [model, evaluation], resources=resources, instance=trained.instance, raise_on_error=False
    )
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    assert "champion" in check.description
    assert registry.version_of("fraud_scorer", CHAMPION) == "1"
    assert registry.version_of("fraud_scorer", CHALLENGER) == "1"
    with pytest.raises(PromotionRefused, match="gates"):
        registry.promote("fraud_scorer", "2", "alice", ("alice",), "try anyway")
