"""The reference pipeline with PLATFORM_ENV=production, by configuration alone, on real services.

The Dagster instance is ``deploy/production/dagster.yaml`` on a fresh PostgreSQL database; the
lake, the landing zone, MLflow's artifacts and Dagster's step logs are in moto's S3; MLflow is a
tracking server on PostgreSQL; Optuna's study is in PostgreSQL; the online store is Redis. Landing
files are generated locally and delivered to S3 as a producer would. Then: ingest, relabel, study
and train (one trial, one CPU), promote, deploy the service and get a served prediction.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import optuna
import pytest
import redis
from mlflow import MlflowClient

from assets.deployments.fraud_api import FRAUD_API
from assets.models.fraud_scorer import FRAUD_SCORER
from assets.training.fraud import FRAUD
from definitions import build_definitions
from factories.deployments import deployment_asset
from jobs.promote import main as promote
from reference_data import generate
from resources import Lakehouse, Settings, build_resources
from tests.conftest import TEST_KEY, days_of
from tests.factories.reference_run import CUTOFF, DATA
from tests.resources.test_s3_lakehouse import CREDENTIALS, free_port
from tests.scaleout.conftest import POSTGRES, Database, s3_client

pytestmark = [
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
]

ROOT = Path(__file__).parents[2]
PRODUCTION_YAML = ROOT / "deploy" / "production" / "dagster.yaml"
TOKEN = "scaleout-serving-token"


def deliver(landing: Path, s3_endpoint: str, bucket: str) -> None:
    """Upload the producer's files to the landing prefix, as a producer on S3 would."""
    client = s3_client(s3_endpoint)
    for path in sorted(landing.rglob("*")):
        if path.is_file():
            key = f"landing/{path.relative_to(landing).as_posix()}"
            client.upload_file(str(path), bucket, key)


def test_the_reference_pipeline_runs_in_production_on_real_services(
    databases: Callable[[str], Database],
    s3_endpoint: str,
    bucket: str,
    mlflow_server: str,
    redis_proc,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dagster_db, optuna_db = databases("dagster"), databases("optuna")
    environment = {
        "PLATFORM_ENV": "production",
        "PLATFORM_HOME": str(tmp_path / "platform"),
        "PIPELINE_START_DATE": DATA.start.isoformat(),
        "LAKEHOUSE_URI": f"s3://{bucket}/lake",
        "LANDING_URI": f"s3://{bucket}/landing",
        "AWS_ENDPOINT_URL": s3_endpoint,
        **CREDENTIALS,
        "ONLINE_STORE_URL": f"redis://{redis_proc.host}:{redis_proc.port}/0",
        "MLFLOW_TRACKING_URI": mlflow_server,
        "OPTUNA_STORAGE": optuna_db.url,
        "TRAINING_ACCELERATOR": "cpu",
        "TRAINING_DEVICES": "1",
        "MODEL_APPROVERS": "alice",
        "PSEUDONYMIZATION_KEY": TEST_KEY,
        "SERVING_TOKEN": TOKEN,
        "SERVING_BENTO_STORE": f"s3://{bucket}/bentos",
        "DAGSTER_PG_HOST": POSTGRES["host"],
        "DAGSTER_PG_PORT": str(POSTGRES["port"]),
        "DAGSTER_PG_DB": dagster_db.name,
        "DAGSTER_PG_USER": POSTGRES["user"],
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_COMPUTE_LOG_BUCKET": bucket,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert not settings.home.exists()

    generate(DATA, tmp_path / "producer")
    deliver(tmp_path / "producer", s3_endpoint, bucket)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PRODUCTION_YAML, dagster_home / "dagster.yaml")
    defs = build_definitions(settings)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        for job in ("daily_ingest", "relabel_gold"):
            for day in days_of(DATA):
                run = defs.resolve_job_def(job).execute_in_process(
                    partition_key=day, instance=instance, raise_on_error=False
                )
                assert run.success, f"{job} {day}"
        trained = defs.resolve_job_def("train_fraud_scorer").execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={
                "ops": {
                    "training__fraud": {"config": {"cutoff": CUTOFF.isoformat()}},
                    "training__fraud_scorer_study": {"config": {"trials": 1}},
                }
            },
        )
        [evaluation] = trained.asset_materializations_for_node("evaluation__fraud_scorer")
        version = str(evaluation.metadata["model_version"].value)
        [gates] = trained.get_asset_check_evaluations()
        resources = build_resources(settings)
        lakehouse = Lakehouse(
            root_uri=settings.lakehouse_uri, storage_options=settings.storage_options
        )
        assert gates.passed, gates.description
        assert promote(["fraud_scorer", version, "--approver", "alice", "--reason", "e2e"]) == 0

        deployment = replace(FRAUD_API, port=free_port())
        deployed = dg.materialize(
            [deployment_asset(deployment, FRAUD_SCORER, FRAUD)],
            resources=resources,
            instance=instance,
        )
        try:
            assert deployed.success
            payment = (
                lakehouse.scan("silver/transactions", partitions=[days_of(DATA)[-1]])
                .select(deployment.request_fields)
                .head(1)
                .collect()
                .to_dicts()[0]
            )
            answer = httpx.post(
                f"http://127.0.0.1:{deployment.port}/predict",
                json={
                    "transactions": [
                        {
                            **payment,
                            "transaction_id": "scaleout-1",
                            "event_time": f"{CUTOFF + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}Z",
                        }
                    ]
                },
                headers={"authorization": f"Bearer {TOKEN}"},
                timeout=60,
            )
        finally:
            resources["serving"].target(deployment).stop(deployment.name)
        assert answer.status_code == 200, answer.text
        [served] = answer.json()
        assert served["transaction_id"] == "scaleout-1"
        assert served["model_version"] == version
        assert 0.0 <= served["probability"] <= 1.0

        assert len(instance.get_runs()) == 2 * DATA.days + 2, "every run is in PostgreSQL"

    # The Bento is in the Bento store, and a cluster's pod would fetch it as its init container
    # does: from S3 into an empty BentoML home.
    [release] = deployed.asset_materializations_for_node("deployment__fraud_api")
    tag = str(release.metadata["bento_tag"].value)
    bento, build = tag.split(":")
    s3_client(s3_endpoint).head_object(Bucket=bucket, Key=f"bentos/{bento}/{build}.bento")
    pod_home = tmp_path / "pod-bentoml"
    fetch = [sys.executable, "-m", "resources.serving", "fetch", tag, "--into", str(pod_home)]
    subprocess.run(fetch, cwd=ROOT, check=True, timeout=300)
    subprocess.run(  # BentoML knows it there
        [sys.executable, "-m", "bentoml", "get", tag],
        env={**os.environ, "BENTOML_HOME": str(pod_home), "BENTOML_DO_NOT_TRACK": "true"},
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert (pod_home / "bentos" / bento / build / "bento.yaml").exists()

    # Every store is the production one, and nothing fell back to a local file.
    objects = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket, Prefix="lake/gold/")
    assert objects.get("KeyCount", 0) > 0
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert client.get_model_version_by_alias("fraud_scorer", "champion").version == version
    artifacts = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket, Prefix="mlflow/")
    assert artifacts.get("KeyCount", 0) > 0
    assert optuna.get_all_study_summaries(storage=optuna_db.url)
    assert redis.Redis(host=redis_proc.host, port=redis_proc.port).dbsize() > 0
    local_defaults = ("online.db", "optuna.db", "mlflow", "lake", "landing")
    assert not [name for name in local_defaults if (settings.home / name).exists()]
