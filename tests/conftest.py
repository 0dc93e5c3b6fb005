"""Shared fixtures: an isolated platform home per test, small seeded landing data."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from definitions import build_definitions
from reference_data import GenerationSummary, GeneratorConfig, generate
from registry import discover
from resources import Lakehouse, Settings
from tests.webhook import Webhook

TEST_KEY = "test-pseudonymization-key"

SMALL = GeneratorConfig(
    seed=11,
    start=date(2024, 3, 1),
    days=4,
    customers=300,
    merchants=40,
    transactions_per_day=600,
    extra_column_day=1,
    renamed_column_day=2,
)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PSEUDONYMIZATION_KEY", TEST_KEY)
    return Settings.from_env({"PLATFORM_HOME": str(tmp_path / "platform")})


@pytest.fixture
def lakehouse(settings: Settings) -> Lakehouse:
    return Lakehouse(root_uri=settings.lakehouse_uri)


@pytest.fixture
def defs(settings: Settings) -> dg.Definitions:
    return build_definitions(settings)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def landed(settings: Settings) -> GenerationSummary:
    return generate(SMALL, Path(settings.landing_uri))


def days_of(config: GeneratorConfig) -> list[str]:
    return [(config.start + timedelta(days=i)).isoformat() for i in range(config.days)]


RunDay = Callable[..., dg.ExecuteInProcessResult]


@pytest.fixture
def run_day(defs: dg.Definitions, instance: dg.DagsterInstance) -> RunDay:
    def run(day: str, job: str = "daily_ingest") -> dg.ExecuteInProcessResult:
        return defs.resolve_job_def(job).execute_in_process(
            partition_key=day, instance=instance, raise_on_error=False
        )

    return run


def with_config(**changes: object) -> GeneratorConfig:
    return replace(SMALL, **changes)


@dataclass
class Pipeline:
    settings: Settings
    lakehouse: Lakehouse
    summary: GenerationSummary
    defs: dg.Definitions
    instance: dg.DagsterInstance
    results: dict[str, dg.ExecuteInProcessResult]

    def run(self, day: str, job: str = "daily_ingest") -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(
            partition_key=day, instance=self.instance, raise_on_error=False
        )

    def days_end(self) -> datetime:
        """The first instant after the last ingested day."""
        end = self.summary.config.start + timedelta(days=self.summary.config.days)
        return datetime.combine(end, datetime.min.time())

    def table(self, name: str, day: str | None = None) -> pl.DataFrame:
        return self.lakehouse.scan(name, partitions=None if day is None else [day]).collect()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The daily ingest run over every day of ``SMALL``, once per test module: a module may
    change it (re-run a day, relabel), and no other module sees that."""
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("PSEUDONYMIZATION_KEY", TEST_KEY)
        home = tmp_path_factory.mktemp("platform")
        settings = Settings.from_env({"PLATFORM_HOME": str(home)})
        summary = generate(SMALL, Path(settings.landing_uri))
        pipeline = Pipeline(
            settings=settings,
            lakehouse=Lakehouse(root_uri=settings.lakehouse_uri),
            summary=summary,
            defs=build_definitions(settings),
            instance=instance,
            results={},
        )
        for day in days_of(SMALL):
            pipeline.results[day] = pipeline.run(day)
        yield pipeline


SOURCES = discover().sources
"""The reference use case's source tables, as the registry finds them in assets/."""


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    """A webhook server on a free loopback port, for as long as the test runs."""
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)  # loopback must not go through a proxy
    server = Webhook()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()
