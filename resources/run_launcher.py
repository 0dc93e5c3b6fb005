"""Dagster's default run launcher, plus a health check run monitoring can use on this host.

The monitoring daemon only checks a started run when the launcher says it can, and the default
launcher cannot. A run of `make demo` executes inside the demo's process and one from the UI in
a run worker of the code server; when that process is killed (kill -9, out of memory) with no
one left to say so, the run would stay STARTED for good. Every run records the pid of the process
that started it on its RUN_START event: the run is alive while that process is.
"""

from __future__ import annotations

import psutil
from dagster import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

CLOCK_SLACK_SECONDS = 1.0
"""A process created after the run started is another one that reused the pid."""


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        records = self._instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.RUN_START, limit=1
        ).records
        if not records:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has not started yet")
        entry = records[0].event_log_entry
        pid = entry.get_dagster_event().pid
        try:
            alive = psutil.Process(pid).create_time() <= entry.timestamp + CLOCK_SLACK_SECONDS
        except psutil.NoSuchProcess:
            alive = False
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process {pid} died")
