"""The production profile's services, real and on loopback: a fresh PostgreSQL database per
store, moto's S3 server, a redis-server and an ``mlflow server``, each gone after the module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from pytest_redis import factories

from tests.resources.test_s3_lakehouse import CREDENTIALS, free_port, s3_client, s3_endpoint

__all__ = ["s3_endpoint"]  # moto's S3 server, shared with the S3 lake tests

POSTGRES = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("PGPORT", "5432")),
    "user": os.environ.get("PGUSER", "postgres"),
}
"""The PostgreSQL server the tests create their databases in (trust auth on loopback)."""

redis_proc = factories.redis_proc(executable="/usr/bin/redis-server", port=None)


@dataclass(frozen=True)
class Database:
    name: str

    @property
    def url(self) -> str:
        """Its URL as MLflow and Optuna take it (SQLAlchemy 2.1 reads it with psycopg 3)."""
        return f"postgresql://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{self.name}"


def _admin() -> psycopg.Connection:
    # CREATE DATABASE cannot run in a transaction.
    return psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES)


@pytest.fixture(scope="module")
def databases() -> Iterator[Callable[[str], Database]]:
    """Creates a uniquely named database per store on demand; drops them all afterwards."""
    created: list[Database] = []

    def create(purpose: str) -> Database:
        database = Database(f"scaleout_{purpose}_{uuid.uuid4().hex[:8]}")
        with _admin() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database.name)))
        created.append(database)
        return database

    yield create
    with _admin() as admin:
        for database in created:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(database.name)
                )
            )


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> str:
    """One bucket for the lake, the landing zone, MLflow's artifacts and Dagster's step logs."""
    name = f"platform-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def mlflow_server(
    databases: Callable[[str], Database], s3_endpoint: str, bucket: str, tmp_path_factory
) -> Iterator[str]:
    """``mlflow server`` on a free port: runs and the registry in PostgreSQL, artifacts in S3,
    which the server proxies, so clients need no S3 access of their own."""
    port = free_port()
    executable = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    assert executable, "mlflow is a dependency"
    log = tmp_path_factory.mktemp("mlflow") / "server.log"
    environment = {
        **os.environ,
        **CREDENTIALS,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                executable,
                "server",
                "--backend-store-uri",
                databases("mlflow").url,
                "--artifacts-destination",
                f"s3://{bucket}/mlflow",
                "--serve-artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # the first start migrates the database
        while not _healthy(url):
            assert process.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
