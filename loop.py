"""`make loop`: the closed loop, lived day by day against a real Dagster instance.

Writes landing files for ``--days`` days with drift from ``--drift-day`` on, then lives through
them. Each simulated day the schedules a deployment switches on tick at their cron times (ingest,
relabel, batch scores, performance), and after every tick the sensors (drift, release, alerts)
and declarative automation (the monitors' assets) are evaluated as Dagster's daemon would, with
their runs executed in this process and recorded in ``$DAGSTER_HOME``, tagged with the schedule
or sensor that asked for them, so the story is in the UI afterwards (`make dev`).

A person acts twice: on ``--first-model-day`` they train, approve and deploy the first model (the
deployment's scoring and performance schedules switch on then), and they approve each version a
retraining registers once its gates pass. Everything else is the platform's own doing. The loop
ends by scoring the drifted days with the first and the last champion, labels as known at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.storage.tags import (
    REPOSITORY_LABEL_TAG,
    RUN_KEY_TAG,
    SCHEDULE_NAME_TAG,
    SCHEDULED_EXECUTION_TIME_TAG,
    SENSOR_NAME_TAG,
)

# Dagster's own way to move its clock (what freshness and run records read) to a simulated time.
from dagster._core.test_utils import freeze_time
from dagster._utils.schedules import cron_string_iterator

from definitions import build_definitions
from demo import QUIET, repository_label, write_landing
from monitoring.performance import ArmComparison, compare_arms, labels_as_of
from registry import Registry, discover
from resources import Lakehouse, build_resources
from resources.audit import registry_audit
from resources.lakehouse_io import asset_key
from resources.settings import Settings
from serving.deployments import Deployment
from serving.edge import load_scorer
from training.registry import CHALLENGER, CHAMPION, ModelRegistry

DAILY_SCHEDULES = ("daily_ingest", "relabel_gold")
"""Switched on from the first day: the lake fills and relabels whether or not a model exists."""
SERVING_SCHEDULES = ("score_{deployment}", "performance_{monitor}")
"""Switched on with the first deployment, as a person would once there is something to score.
The weekly training schedule stays off: here, retraining is the drift sensor's decision."""
WEEKLY = {"relabel_gold_schedule": 5}
"""Ticked on Saturdays only. Each night it rebuilds every gold day chargebacks can still reach
(45), one run per day: on 40 simulated days that would be 800 runs, more than the rest of the
loop together, to refresh labels the weekly cadence already brings to each training."""
SETTLE_ROUNDS = 8
"""Sensor and automation evaluations after a tick until nothing more is requested."""


@dataclass(frozen=True)
class Event:
    at: datetime
    who: str
    what: str


@dataclass
class Clock:
    """Dagster's daemon, in process and on simulated time: ticks the switched-on schedules and
    every sensor, executes what they request, keeps their cursors and de-duplicates run keys."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    run_config: Callable[[dg.JobDefinition, datetime], dict]
    """Run config the clock adds to a run started at a simulated time (a training set's cutoff)."""
    now: datetime = datetime.min
    switched_on: set[str] = field(default_factory=set)
    cursors: dict[str, str | None] = field(default_factory=dict)
    automation: dict[str, AssetDaemonCursor | None] = field(default_factory=dict)
    story: list[Event] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.repository = self.defs.get_repository_def()
        self.resources = build_resources(Settings.from_env())
        self.tags = {REPOSITORY_LABEL_TAG: repository_label()}

    def tell(self, who: str, what: str) -> None:
        event = Event(self.now, who, what)
        self.story.append(event)
        print(f"{event.at:%Y-%m-%d %H:%M}  {who:<24} {what}", flush=True)

    def live_until(self, end: datetime) -> None:
        """Every switched-on schedule tick from now to ``end``, in time order, then, at ``end``,
        the sensors and automation until they settle: once a day, where the daemon evaluates
        them every half minute, since a day's runs are what they react to."""
        ticks = sorted(
            (at.replace(tzinfo=None), schedule.name)
            for schedule in self.repository.schedule_defs
            if schedule.name in self.switched_on
            for at in _ticks(schedule, self.now, end)
            if schedule.name not in WEEKLY or at.weekday() == WEEKLY[schedule.name]
        )
        for at, name in ticks:
            self.now = at
            self._tick_schedule(self.repository.get_schedule_def(name))
        self.now = end
        self.settle()

    def settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            if not (self._tick_sensors() + self._tick_automation()):
                return

    def run(self, request: dg.RunRequest, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
        """``request`` executed in process at the simulated now (Dagster's clock frozen there,
        so freshness is judged and runs are recorded on the simulated day): its job, or the
        assets and checks it names."""
        tags = {**self.tags, **request.tags, **tags}
        with freeze_time(self.now.replace(tzinfo=UTC)):
            if request.job_name and not (request.asset_selection or request.asset_check_keys):
                job = self.defs.resolve_job_def(request.job_name)
                result = job.execute_in_process(
                    instance=self.instance,
                    partition_key=request.partition_key,
                    run_config=_merge(
                        QUIET, request.run_config or {}, self.run_config(job, self.now)
                    ),
                    tags=tags,
                    raise_on_error=False,
                )
            else:
                result = dg.materialize(
                    [*self.defs.assets, *(self.defs.asset_checks or [])],
                    selection=dg.AssetSelection.assets(*(request.asset_selection or []))
                    | dg.AssetSelection.checks(*(request.asset_check_keys or [])),
                    partition_key=request.partition_key,
                    instance=self.instance,
                    resources=self.resources,
                    run_config=QUIET,
                    tags=tags,
                    raise_on_error=False,
                )
        if not result.success:
            self.failed.append(f"{_what(request)} {request.partition_key or ''}".strip())
        self._after(result)
        return result

    def _tick_schedule(self, schedule: dg.ScheduleDefinition) -> None:
        at = self.now.replace(tzinfo=UTC)
        # Closed after the tick: an open context stays the process's current one after it.
        with dg.build_schedule_context(
            instance=self.instance, scheduled_execution_time=at, repository_def=self.repository
        ) as context:
            data = schedule.evaluate_tick(context)
        tags = {SCHEDULE_NAME_TAG: schedule.name, SCHEDULED_EXECUTION_TIME_TAG: at.isoformat()}
        days = []
        for request in data.run_requests or []:
            job = request.job_name or schedule.job_name
            result = self.run(request.with_replaced_attrs(job_name=job), tags)
            outcome = "" if result.success else "FAILED"
            days.append(" ".join(filter(None, (request.partition_key, outcome))) or "ok")
        if days:
            self.tell(schedule.job_name, _days(days))

    def _tick_sensors(self) -> int:
        launched = 0
        for sensor in self.repository.sensor_defs:
            if isinstance(sensor, dg.AutomationConditionSensorDefinition):
                continue
            with (
                freeze_time(self.now.replace(tzinfo=UTC)),
                dg.build_sensor_context(
                    instance=self.instance,
                    cursor=self.cursors.get(sensor.name),
                    repository_def=self.repository,
                    resources=self.resources,
                ) as context,
            ):
                data = sensor.evaluate_tick(context)
            self.cursors[sensor.name] = data.cursor
            for request in data.run_requests or []:
                if request.run_key and self._seen(sensor.name, request.run_key):
                    continue
                tags = {SENSOR_NAME_TAG: sensor.name}
                if request.run_key:
                    tags[RUN_KEY_TAG] = request.run_key
                checks = bool(request.asset_check_keys)
                if not (request.job_name or checks):
                    request = request.with_replaced_attrs(job_name=sensor.job_name)
                if not checks:  # a check run only tells of the checks that fail
                    self.tell(sensor.name, f"requests {_what(request)} ({_reasons(request)})")
                result = self.run(request, tags)
                if not checks:
                    self.tell(_what(request), "ok" if result.success else "FAILED")
                launched += 1
        return launched

    def _tick_automation(self) -> int:
        launched = 0
        for sensor in self.repository.sensor_defs:
            if not isinstance(sensor, dg.AutomationConditionSensorDefinition):
                continue
            evaluated = dg.evaluate_automation_conditions(
                defs=self.defs,
                instance=self.instance,
                asset_selection=sensor.asset_selection,
                evaluation_time=self.now.replace(tzinfo=UTC),
                cursor=self.automation.get(sensor.name),
            )
            self.automation[sensor.name] = evaluated.cursor
            # One run per partition, the unpartitioned first (a reference before its reports).
            runs: dict[str | None, list[dg.AssetKey]] = {}
            for key in sorted(sensor.asset_selection.resolve(self.defs.resolve_asset_graph())):
                for partition in evaluated.get_requested_partitions(key):
                    runs.setdefault(partition, []).append(key)
            for partition in sorted(runs, key=lambda p: (p is not None, p or "")):
                request = dg.RunRequest(asset_selection=runs[partition], partition_key=partition)
                result = self.run(request, {SENSOR_NAME_TAG: sensor.name})
                day = f" {partition}" if partition else ""
                outcome = "ok" if result.success else "FAILED"
                self.tell(sensor.name, f"{_what(request)}{day}: {outcome}")
                launched += 1
        return launched

    def _after(self, result: dg.ExecuteInProcessResult) -> None:
        """What a person reads off a run: a drift report's verdict, a version's gates."""
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            shown = {k: v.value for k, v in materialization.metadata.items()}
            if "worst_severity" in shown:
                self.tell(
                    "drift report",
                    f"{materialization.partition}: {shown['worst_severity']}"
                    f" ({shown['drifted_features'] or 'no feature'})",
                )
            if "bento_tag" in shown:
                self.tell(
                    "deployment",
                    f"serves champion {shown['model_version']}, challenger "
                    f"{shown['challenger_version']} (was {shown['previous_version']})",
                )
        for check in result.get_asset_check_evaluations():
            if check.asset_key.path[0] == "evaluation":
                self.tell(
                    "evaluation", f"{'passed' if check.passed else 'failed'}: {check.description}"
                )
            elif not check.passed:
                self.tell(check.check_name, f"{check.asset_key.to_user_string()}: failed")

    def _seen(self, sensor: str, run_key: str) -> bool:
        runs = self.instance.get_run_records(
            dg.RunsFilter(tags={SENSOR_NAME_TAG: sensor, RUN_KEY_TAG: run_key}), limit=1
        )
        return bool(runs)


@dataclass(frozen=True)
class Outcome:
    story: list[Event]
    failed: list[str]
    first_version: str
    last_version: str
    drifted: ArmComparison
    """The first champion (arm a) and the last (arm b) on the same drifted days."""


def live(
    settings: Settings,
    instance: dg.DagsterInstance,
    days: list[date],
    drift_day: int,
    first_model_day: int,
    approvers: tuple[str, ...],
    trials: int,
) -> Outcome:
    """Lives through ``days`` (landing files already written): see the module docstring."""
    registry = discover()
    [deployment] = registry.deployments.values()
    [monitor] = [m for m in registry.monitors.values() if m.deployment == deployment.name]
    defs = build_definitions(settings)
    lakehouse = Lakehouse(root_uri=settings.lakehouse_uri, storage_options=settings.storage_options)
    models = build_resources(settings)["mlflow"].registry(registry_audit(lakehouse))
    clock = Clock(defs, instance, _clock_config(registry, trials))
    clock.now = datetime.combine(days[0] + timedelta(days=1), time())
    clock.switched_on.update(f"{name}_schedule" for name in DAILY_SCHEDULES)
    serving = [
        f"{name.format(deployment=deployment.name, monitor=monitor.name)}_schedule"
        for name in SERVING_SCHEDULES
    ]
    first_version = ""
    approved: set[str] = set()
    for index, day in enumerate(days):
        if index == drift_day:
            clock.tell("landing", f"{day}: the drift starts (amounts, merchants, card testing)")
        if index == first_model_day:
            first_version = _first_model(clock, models, deployment, approvers)
            approved.add(first_version)
            clock.switched_on.update(serving)
        clock.live_until(datetime.combine(day + timedelta(days=1), time(23, 59)))
        candidate = models.version_of(deployment.model, CHALLENGER)
        if first_version and candidate and candidate not in approved:
            clock.tell("person", f"approves {deployment.model} {candidate} (its gates passed)")
            models.promote(deployment.model, candidate, approvers[0], approvers, "make loop")
            approved.add(candidate)
            clock.settle()
    last_version = models.version_of(deployment.model, CHAMPION) or ""
    drifted = backtest(
        models, lakehouse, deployment, monitor.label_source, first_version, last_version,
        days[drift_day],
    )  # fmt: skip
    return Outcome(clock.story, clock.failed, first_version, last_version, drifted)


def _first_model(
    clock: Clock, models: ModelRegistry, deployment: Deployment, approvers: tuple[str, ...]
) -> str:
    """A person's first model: trained from the UI, approved, deployed."""
    clock.tell("person", f"trains {deployment.model} from the UI")
    clock.run(dg.RunRequest(job_name=f"train_{deployment.model}"), {})
    version = models.version_of(deployment.model, CHALLENGER)
    if version is None:
        raise SystemExit(f"the first {deployment.model} missed its gates: the loop cannot go on")
    clock.tell("person", f"approves {deployment.model} {version}")
    models.promote(deployment.model, version, approvers[0], approvers, "make loop: first model")
    clock.settle()  # the release sensor deploys it
    return version


def backtest(
    models: ModelRegistry,
    lakehouse: Lakehouse,
    deployment: Deployment,
    label_source: str,
    first: str,
    last: str,
    since: date,
) -> ArmComparison:
    """Both versions on the same scored payments since ``since``, labels as known now: the
    payments' inputs are in the batch scores as they were served."""
    rows = (
        lakehouse.scan(deployment.scores_table)
        .filter(pl.col("event_time") >= datetime.combine(since, time()))
        .collect()
    )
    chargebacks = lakehouse.scan(f"silver/{label_source}").collect()
    arms = []
    with tempfile.TemporaryDirectory() as scratch:
        for arm, version in (("first", first), ("last", last)):
            folder = models.download(deployment.model, version, Path(scratch) / arm)
            scored = load_scorer(folder, "torch").score(rows)
            arms.append(
                rows.select("transaction_id", "event_time").with_columns(
                    pl.Series("probability", scored, dtype=pl.Float64), arm=pl.lit(arm)
                )
            )
    labelled = labels_as_of(pl.concat(arms), chargebacks, chargebacks["reported_at"].max())
    return compare_arms(labelled, "first", "last")


def _clock_config(registry: Registry, trials: int) -> Callable[[dg.JobDefinition, datetime], dict]:
    """A training set is built as of the simulated now, not the wall clock's, and each study
    runs ``trials`` trials."""
    cutoffs = {"__".join(asset_key(s.table).path) for s in registry.training_sets.values()}
    studies = {"__".join(asset_key(m.study_table).path) for m in registry.models.values()}

    def config(job: dg.JobDefinition, now: datetime) -> dict:
        ops = {
            **{op: {"config": {"cutoff": now.isoformat()}} for op in cutoffs},
            **{op: {"config": {"trials": trials}} for op in studies},
        }
        return {"ops": {op: c for op, c in ops.items() if op in job.graph.node_dict}}

    return config


def _ticks(schedule: dg.ScheduleDefinition, start: datetime, end: datetime) -> Iterator[datetime]:
    for at in cron_string_iterator(
        start.replace(tzinfo=UTC).timestamp(),
        schedule.cron_schedule,
        schedule.execution_timezone or "UTC",
    ):
        if at.replace(tzinfo=None) > end:
            return
        yield at


def _merge(*configs: dict) -> dict:
    merged: dict = {}
    for config in configs:
        for key, value in config.items():
            both = isinstance(value, dict) and isinstance(merged.get(key), dict)
            merged[key] = _merge(merged[key], value) if both else value
    return merged


def _days(days: list[str]) -> str:
    return days[0] if len(days) == 1 else f"{len(days)} days, {days[0]} .. {days[-1]}"


def _reasons(request: dg.RunRequest) -> str:
    return ", ".join(f"{k}={v}" for k, v in request.tags.items() if not k.startswith("dagster/"))


def _what(request: dg.RunRequest) -> str:
    """A run's job, or the assets and checks it makes."""
    if request.job_name and not (request.asset_selection or request.asset_check_keys):
        return request.job_name
    keys = [*(request.asset_selection or []), *(request.asset_check_keys or [])]
    return ", ".join(key.to_user_string() for key in keys)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--drift-day", type=int, default=30, help="first drifted day (from 0)")
    parser.add_argument(
        "--first-model-day",
        type=int,
        default=21,
        help="the day a person trains the first model: three weeks of history, two of them "
        "labelled (the label delay is a week)",
    )
    parser.add_argument("--end-date", type=date.fromisoformat, default=None)
    parser.add_argument("--transactions-per-day", type=int, default=3_000)
    parser.add_argument("--customers", type=int, default=1_500)
    parser.add_argument("--merchants", type=int, default=150)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trials", type=int, default=4, help="Optuna trials per training")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The story is printed here; each sensor's own reasoning is in the UI, not on the terminal.
    logging.getLogger("dagster").setLevel(logging.WARNING)
    settings = Settings.from_env()
    if not 0 < args.first_model_day < args.drift_day < args.days:
        print("need 0 < --first-model-day < --drift-day < --days", file=sys.stderr)
        return 2
    if not settings.model_approvers:
        print("the loop's person approves versions: set MODEL_APPROVERS", file=sys.stderr)
        return 2
    [deployment] = discover().deployments.values()
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", deployment.port)) == 0:
            print(
                f"port {deployment.port} is taken (the demo's service? `make stop`)",
                file=sys.stderr,
            )
            return 2
    end = args.end_date or datetime.now(UTC).date() - timedelta(days=1)
    start = end - timedelta(days=args.days - 1)
    write_landing(args, start, args.drift_day, settings.landing_uri)
    days = [start + timedelta(days=i) for i in range(args.days)]
    with dg.DagsterInstance.get() as instance:
        outcome = live(
            settings,
            instance,
            days,
            args.drift_day,
            args.first_model_day,
            settings.model_approvers,
            args.trials,
        )
    print_outcome(outcome, days[args.drift_day])
    return 1 if outcome.failed else 0


def print_outcome(outcome: Outcome, drift_day: date) -> None:
    decisions = [e for e in outcome.story if e.who != "daily_ingest" and e.who != "relabel_gold"]
    print("\nWhat the platform decided, and when:")
    for event in decisions:
        print(f"  {event.at:%Y-%m-%d %H:%M}  {event.who:<24} {event.what}")
    drifted = outcome.drifted
    print(
        f"\nOn the payments since the drift ({drift_day} on, labels as known now): version "
        f"{outcome.first_version} AUROC {drifted.auroc_a:.3f}, version {outcome.last_version} "
        f"AUROC {drifted.auroc_b:.3f} (paired DeLong p={drifted.p_value:.3g}, "
        f"{drifted.positives_a} frauds in {drifted.n_a} payments)"
    )
    print(json.dumps({"failed_runs": outcome.failed}))
    print("See every run, with the sensor or schedule that asked for it: `make loop-ui`.")


if __name__ == "__main__":
    sys.exit(main())
