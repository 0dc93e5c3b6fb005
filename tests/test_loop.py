"""`make loop`'s story on a shorter calendar, against a real instance: quiet while the data is
stationary, one retraining when it drifts, the approved version serving, and better than the
first on the drifted days."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import pytest
from dagster._core.storage.tags import SENSOR_NAME_TAG

from loop import Outcome, live
from reference_data import GeneratorConfig, generate
from registry import discover
from resources import Settings, build_resources
from resources.lakehouse_io import asset_key
from tests.conftest import TEST_KEY

START = date(2024, 5, 1)
DAYS = [START + timedelta(days=i) for i in range(22)]
FIRST_MODEL = 14
"""Two weeks of history, one labelled (the label delay is a week): the least that passes gates."""
DRIFT = 17
TOKEN = "loop-token"
REGISTRY = discover()
[DEPLOYMENT] = REGISTRY.deployments.values()
[MONITOR] = REGISTRY.monitors.values()


class Lived:
    def __init__(self, outcome: Outcome, instance: dg.DagsterInstance) -> None:
        self.outcome = outcome
        self.instance = instance

    def drift(self) -> dict[date, str]:
        """Each scored day's worst drift severity, from the report's materializations."""
        records = self.instance.fetch_materializations(
            asset_key(MONITOR.drift_table), limit=1000
        ).records
        return {
            date.fromisoformat(r.partition_key): str(
                r.asset_materialization.metadata["worst_severity"].value
            )
            for r in records
            if r.partition_key
        }

    def runs(self, job: str) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(dg.RunsFilter(job_name=job)))


@pytest.fixture(scope="module")
def lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lived]:
    home = tmp_path_factory.mktemp("loop")
    environment = {
        "PLATFORM_HOME": str(home),
        "PIPELINE_START_DATE": START.isoformat(),
        "PSEUDONYMIZATION_KEY": TEST_KEY,
        "SERVING_TOKEN": TOKEN,
        "MODEL_APPROVERS": "alice",
        "TRAINING_ACCELERATOR": "cpu",
    }
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        for name, value in environment.items():
            mp.setenv(name, value)
        settings = Settings.from_env()
        data = GeneratorConfig(
            seed=7,
            start=START,
            days=len(DAYS),
            customers=1_500,
            merchants=150,
            transactions_per_day=3_000,
            drift_start_day=DRIFT,
        )
        generate(data, Path(settings.landing_uri))
        serving = build_resources(settings)["serving"].target(DEPLOYMENT)
        try:
            yield Lived(live(settings, instance, DAYS, DRIFT, FIRST_MODEL, ("alice",), 2), instance)
        finally:
            serving.stop(DEPLOYMENT.name)


def test_the_loop_runs_without_a_failed_run(lived: Lived) -> None:
    assert lived.outcome.failed == []


def test_no_drift_alarm_on_stationary_days_and_one_on_the_first_drifted_day(lived: Lived) -> None:
    drift = lived.drift()
    stationary = {day: s for day, s in drift.items() if day < DAYS[DRIFT]}
    assert stationary and "critical" not in stationary.values(), stationary
    assert drift[DAYS[DRIFT]] == "critical"


def test_one_retraining_is_requested_for_the_drift_within_its_cooldown(lived: Lived) -> None:
    retrainings = [
        run
        for run in lived.runs(f"train_{DEPLOYMENT.model}")
        if run.tags.get(SENSOR_NAME_TAG) == f"{MONITOR.name}_drift"
    ]
    [retraining] = retrainings
    assert retraining.tags["drift_day"] == DAYS[DRIFT].isoformat()
    assert "amount" in retraining.tags["drift_features"]
    assert lived.outcome.first_version == "1"
    assert lived.outcome.last_version == "2"


def test_the_approved_version_is_deployed_by_the_release_sensor_and_serves(lived: Lived) -> None:
    releases = [
        run
        for run in lived.runs(f"deploy_{DEPLOYMENT.name}")
        if run.tags.get(SENSOR_NAME_TAG) == f"{DEPLOYMENT.name}_release"
    ]
    assert [r.tags["champion_version"] for r in reversed(releases)][-1] == "2"
    payment = {
        "transaction_id": "loop-1",
        "customer_id": "C000001",
        "merchant_id": "M00001",
        "amount": 42.0,
        "channel": "online",
        "device": "mobile",
        "event_time": f"{DAYS[-1]}T12:00:00Z",
    }
    answer = httpx.post(
        f"http://127.0.0.1:{DEPLOYMENT.port}/predict",
        json={"transactions": [payment]},
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert pl.DataFrame(answer.json())["model_version"].to_list() == ["2"]


def test_the_new_champion_beats_the_old_on_the_drifted_days(lived: Lived) -> None:
    drifted = lived.outcome.drifted
    assert drifted.positives_a > 10
    assert drifted.auroc_b > drifted.auroc_a, drifted
