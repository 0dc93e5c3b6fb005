"""Shared fixtures: an isolated platform home per test, small seeded landing data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from definitions import build_definitions
from reference_data import GenerationSummary, GeneratorConfig, generate
from resources import Lakehouse, Settings

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
