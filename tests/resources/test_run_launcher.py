"""A run whose process is killed ends FAILURE, on the instance configuration of `make demo`/`dev`.

Two real kills: a run launched the way the UI launches it (the instance's run launcher starts a
run worker of a code server, here one serving the tiny blocking job below; the code server fails
the run when its worker dies), and a run executing in-process the way `make demo` runs it, whose
whole process dies; there the monitoring daemon fails it through the launcher's health check.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
from dagster._core.launcher import WorkerStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import EmptyWorkspaceTarget, GrpcServerTarget
from dagster._daemon.daemon import MonitoringDaemon
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
from dagster._grpc.client import DagsterGrpcClient

ROOT = Path(__file__).resolve().parents[2]
LOCATION = "run_monitoring_test"
TIMEOUT_SECONDS = 20.0
T = TypeVar("T")


@dg.op
def wait_to_be_killed() -> None:
    time.sleep(60)


@dg.job(executor_def=dg.in_process_executor)
def blocking_job() -> None:
    """Runs its op inside the run worker, so killing the worker leaves no step process behind."""
    wait_to_be_killed()


@dg.op
def return_at_once() -> None:
    pass


@dg.job
def quick_job() -> None:
    return_at_once()


defs = dg.Definitions(jobs=[blocking_job])


def wait_for(probe: Callable[[], T | None], what: str) -> T:
    """Polls until probe returns something; the bound keeps a broken run from hanging the suite."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while (found := probe()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """An instance home whose dagster.yaml the Makefile wrote, as for `make demo` and `make dev`."""
    home = tmp_path / "dagster_home"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    subprocess.run(["make", "-s", f"{home}/dagster.yaml"], cwd=ROOT, env=env, check=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def code_server(instance: dg.DagsterInstance) -> Iterator[int]:
    """A code server for this module in a process group of its own, killed whole at the end."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--python-file", __file__, "--attribute", "defs", "--location-name", LOCATION]
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "api", "grpc", *args, "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": instance.root_directory},
        start_new_session=True,
    )
    try:
        wait_for(lambda: answers_ping(DagsterGrpcClient(port=port)), "the code server")
        yield port
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def answers_ping(client: DagsterGrpcClient) -> bool | None:
    try:
        client.ping("")
    except Exception:
        return None
    return True


def first_event(
    instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType
) -> dg.EventLogEntry | None:
    return next(iter(instance.all_logs(run_id, of_type=event_type)), None)


def finished_run(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.is_finished else None


def test_instance_runs_the_monitoring_daemon(instance: dg.DagsterInstance) -> None:
    assert instance.run_monitoring_enabled
    assert MonitoringDaemon.daemon_type() in instance.get_required_daemon_types()


def test_killed_run_worker_marks_run_failed(instance: dg.DagsterInstance, code_server: int) -> None:
    target = GrpcServerTarget(
        host="localhost", port=code_server, socket=None, location_name=LOCATION
    )
    with WorkspaceProcessContext(instance, target) as context:
        workspace = context.create_request_context()
        repository = next(iter(workspace.get_code_location(LOCATION).get_repositories().values()))
        remote_job = repository.get_full_job(blocking_job.name)
        run = instance.create_run_for_job(
            job_def=blocking_job,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
        )
        instance.launch_run(run.run_id, workspace)

    step_start = wait_for(
        lambda: first_event(instance, run.run_id, dg.DagsterEventType.STEP_START),
        "the op to start",
    )
    worker = step_start.get_dagster_event().pid
    assert worker is not None and worker != os.getpid(), "the run has a process of its own"
    os.kill(worker, signal.SIGKILL)

    failed = wait_for(lambda: finished_run(instance, run.run_id), "the run to finish")
    assert failed.status == dg.DagsterRunStatus.FAILURE
    died = f"Run execution process for {run.run_id} was terminated by signal 9 (SIGKILL)."
    assert any(died in event.message for event in instance.all_logs(run.run_id))


def only_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    records = instance.get_run_records()
    return records[0].dagster_run if records else None


def test_killed_in_process_run_is_failed_by_run_monitoring(instance: dg.DagsterInstance) -> None:
    demo_like = (
        "import dagster as dg; from tests.resources.test_run_launcher import blocking_job; "
        "blocking_job.execute_in_process(instance=dg.DagsterInstance.get())"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", demo_like],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": instance.root_directory},
    )
    try:
        run = wait_for(lambda: only_run(instance), "the run to be created")
        wait_for(
            lambda: first_event(instance, run.run_id, dg.DagsterEventType.STEP_START),
            "the op to start",
        )
    finally:
        process.kill()
        process.wait()
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

    with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
        list(execute_run_monitoring_iteration(context, logging.getLogger("run_monitoring")))

    dead = instance.get_run_by_id(run.run_id)
    assert dead.status == dg.DagsterRunStatus.FAILURE
    assert any(f"process {process.pid} died" in e.message for e in instance.all_logs(run.run_id))


def test_a_running_run_is_left_alone(instance: dg.DagsterInstance) -> None:
    """The health check must not fail a run whose process lives (here: this test's own)."""
    result = quick_job.execute_in_process(instance=instance)
    run = instance.get_run_by_id(result.run_id)
    assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
