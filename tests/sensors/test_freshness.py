"""A landing day the nightly ingest missed: at the 06:00 deadline Dagster's freshness checks fail
for it, a warning names each late asset, declarative automation makes the day, and the checks
pass again; days already made are left alone. Against a real instance, on real runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from definitions import build_definitions
from reference_data import generate
from resources import Settings, build_resources
from resources.alerts import Alerts
from sensors.freshness import FRESHNESS_CHECKS_SENSOR, freshness_alerts
from tests.conftest import SMALL, TEST_KEY, days_of
from tests.webhook import Webhook

TODAY = datetime.now(UTC).date()
DATA = replace(SMALL, start=TODAY - timedelta(days=3), days=3)
"""Three landing days up to yesterday: the last one is the day due at this morning's deadline."""
MISSED = days_of(DATA)[-1]
DEADLINE = datetime.combine(TODAY, time(6), tzinfo=UTC)


@dataclass
class Late:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    resources: dict[str, object]

    def check(self) -> list[dg.AssetCheckEvaluation]:
        """The freshness sensor's tick at 07:00, and the check run it asks for."""
        sensor = self.defs.resolve_sensor_def(FRESHNESS_CHECKS_SENSOR)
        with freeze_time(DEADLINE + timedelta(hours=1)):
            with dg.build_sensor_context(
                instance=self.instance, repository_def=self.defs.get_repository_def()
            ) as context:
                data = sensor.evaluate_tick(context)
            [request] = data.run_requests or []
            result = dg.materialize(
                [*self.defs.assets, *self.defs.asset_checks],
                selection=dg.AssetSelection.checks(*request.asset_check_keys),
                instance=self.instance,
                resources=self.resources,
            )
        return result.get_asset_check_evaluations()


@pytest.fixture(scope="module")
def late(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Late]:
    """Shared, in file order: the warning first, then the day made."""
    home = tmp_path_factory.mktemp("platform")
    settings = Settings.from_env(
        {"PLATFORM_HOME": str(home), "PIPELINE_START_DATE": DATA.start.isoformat()}
    )
    generate(DATA, Path(settings.landing_uri))
    defs = build_definitions(settings)
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("PSEUDONYMIZATION_KEY", TEST_KEY)
        for day in days_of(DATA)[:-1]:  # the schedule was off the last night
            run = defs.resolve_job_def("daily_ingest").execute_in_process(
                partition_key=day, instance=instance
            )
            assert run.success
        yield Late(defs, instance, build_resources(settings))


def test_a_missed_day_fails_its_freshness_checks_and_warns(late: Late, webhook: Webhook) -> None:
    evaluations = late.check()
    transactions = dg.AssetKey(["bronze", "transactions"])
    failed = {e.asset_key for e in evaluations if not e.passed}
    assert transactions in failed and dg.AssetKey(["features", "online"]) in failed
    assert failed == {e.asset_key for e in evaluations}, "every ingested asset lacks the day"
    [bronze] = [e for e in evaluations if e.asset_key == transactions]
    assert MISSED in (bronze.description or "")

    sensor = freshness_alerts([e.asset_check_key for e in evaluations])
    alerts = {"alerts": Alerts(webhook_url=webhook.url)}
    with dg.build_sensor_context(instance=late.instance, resources=alerts) as context:
        first = sensor(context)
    assert isinstance(first, dg.SensorResult)
    assert len(webhook.payloads) == len(evaluations)
    titles = {alert["title"] for alert in webhook.payloads}
    assert "bronze/transactions missed its 06:00 UTC deadline" in titles
    assert {alert["tier"] for alert in webhook.payloads} == {"warning"}
    with dg.build_sensor_context(
        instance=late.instance, resources=alerts, cursor=first.cursor
    ) as context:
        again = sensor(context)
    assert isinstance(again, dg.SensorResult) and again.skip_reason is not None
    assert len(webhook.payloads) == len(evaluations), "one warning per failed evaluation"


def test_automation_makes_the_missed_day_at_the_deadline(late: Late) -> None:
    before = dg.evaluate_automation_conditions(
        defs=late.defs, instance=late.instance, evaluation_time=DEADLINE - timedelta(minutes=1)
    )
    assert before.total_requested == 0, "nothing before the deadline: the ingest may still run"
    at = dg.evaluate_automation_conditions(
        defs=late.defs,
        instance=late.instance,
        evaluation_time=DEADLINE + timedelta(seconds=30),
        cursor=before.cursor,
    )
    graph = late.defs.resolve_asset_graph()
    ingested = {
        key
        for key in graph.get_all_asset_keys()
        if graph.get(key).group_name in ("bronze", "silver", "gold", "features")
    }
    requested = {key for key in ingested if at.get_requested_partitions(key)}
    assert requested == ingested
    assert {p for key in ingested for p in at.get_requested_partitions(key)} == {MISSED}
    made = dg.materialize(
        late.defs.assets,
        selection=sorted(requested),
        partition_key=MISSED,
        instance=late.instance,
        resources=late.resources,
    )
    assert made.success
    assert all(e.passed for e in late.check())
    after = dg.evaluate_automation_conditions(
        defs=late.defs,
        instance=late.instance,
        evaluation_time=DEADLINE + timedelta(minutes=1),
        cursor=at.cursor,
    )
    assert after.total_requested == 0, "made once, not again"
