"""Production configuration: the same pipeline on an S3 lake, a real S3 endpoint on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from definitions import build_definitions
from reference_data import generate
from resources import Settings
from resources.lakehouse import Lakehouse
from tests.conftest import days_of, with_config

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": "us-east-1",
}


def s3_client(endpoint: str) -> Any:
    """boto3's S3 client for moto's server, with the test keys."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_REGION"],
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, started from the installed binary on a free loopback port, with the
    keys in the environment, where delta-rs, pyarrow and boto3 read them."""
    port = free_port()
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert server, "moto[server] is a dev dependency"
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as keys:
        for name, value in CREDENTIALS.items():
            keys.setenv(name, value)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_daily_ingest_runs_unchanged_on_an_s3_lake(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSEUDONYMIZATION_KEY", "s3-test-pseudonymization-key")
    s3_client(s3_endpoint).create_bucket(Bucket="lake")
    settings = Settings.from_env(
        {
            "PLATFORM_ENV": "production",
            "LAKEHOUSE_URI": "s3://lake/prod",
            "LANDING_URI": str(tmp_path / "landing"),
            "ONLINE_STORE_URL": f"sqlite:///{tmp_path / 'online.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "OPTUNA_STORAGE": f"sqlite:///{tmp_path / 'optuna.db'}",
            "AWS_ENDPOINT_URL": s3_endpoint,
            **CREDENTIALS,
        }
    )
    config = with_config(days=2, transactions_per_day=200, customers=100, merchants=20)
    generate(config, Path(settings.landing_uri))
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        for day in days_of(config):
            result = defs.resolve_job_def("daily_ingest").execute_in_process(
                partition_key=day, instance=instance, raise_on_error=False
            )
            assert result.success, day

    lakehouse = Lakehouse(root_uri=settings.lakehouse_uri, storage_options=settings.storage_options)
    gold = lakehouse.scan("gold/labeled_transactions").collect()
    silver = lakehouse.scan("silver/transactions").collect()
    assert gold.height == silver.height > 300
    assert set(gold["_partition_date"]) == set(days_of(config))
    first = lakehouse.scan("gold/labeled_transactions", version=0).collect()
    assert set(first["_partition_date"]) == {days_of(config)[0]}
    assert not (tmp_path / "lake").exists()
