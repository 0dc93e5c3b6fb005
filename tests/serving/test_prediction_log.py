"""The prediction log against a real Delta table: what is appended is what gets written, by rows,
by time and on close; a failed write loses nothing; a killed process loses only its buffer."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from resources.lakehouse import Lakehouse
from serving.prediction_log import PredictionLog

ROOT = Path(__file__).resolve().parents[2]
TABLE = "monitoring/predictions"
SCHEMA = {
    "prediction_id": pl.Int64,
    "customer_id": pl.String,
    "arm": pl.String,
    "score": pl.Float64,
    "predicted_at": pl.Datetime("us", "UTC"),
}
NEVER = 3600.0


def rows(first: int, count: int) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "prediction_id": i,
                "customer_id": f"c{i % 7}",
                "arm": "challenger" if i % 3 == 0 else "champion",
                "score": i / 100,
                "predicted_at": datetime(2024, 3, 1, 12, 0, i % 60, tzinfo=UTC),
            }
            for i in range(first, first + count)
        ],
        schema=SCHEMA,
    )


@pytest.fixture
def lake(tmp_path: Path) -> Lakehouse:
    return Lakehouse(root_uri=str(tmp_path / "lake"))


def writer(lake: Lakehouse) -> functools.partial[object]:
    return functools.partial(lake.append, TABLE)


def written(lake: Lakehouse) -> pl.DataFrame:
    if not lake.exists(TABLE):
        return pl.DataFrame(schema=SCHEMA)
    return lake.scan(TABLE).collect().sort("prediction_id")


def test_flush_writes_exactly_the_rows_appended(lake: Lakehouse) -> None:
    appended = rows(0, 15)
    with PredictionLog(writer(lake), SCHEMA, flush_seconds=NEVER) as log:
        log.append(appended[:10])
        log.append(appended[10:])
        assert log.flush() == 15
        assert log.flush() == 0
    assert written(lake).equals(appended)


def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_full_buffer_is_written_by_the_log_not_by_the_request(lake: Lakehouse) -> None:
    requests = {threading.get_ident()}
    writers: list[int] = []

    def write(frame: pl.DataFrame) -> object:
        writers.append(threading.get_ident())
        return lake.append(TABLE, frame)

    with PredictionLog(write, SCHEMA, flush_rows=8, flush_seconds=NEVER) as log:
        log.append(rows(0, 5))
        assert not lake.exists(TABLE)
        log.append(rows(5, 5))
        eventually(lambda: log.pending == 0 and lake.exists(TABLE))
        assert written(lake)["prediction_id"].to_list() == list(range(10))
        log.append(rows(10, 3))
        assert written(lake).height == 10 and log.pending == 3
    assert writers and not requests & set(writers[:1])


def test_flushes_on_time(lake: Lakehouse) -> None:
    with PredictionLog(writer(lake), SCHEMA, flush_seconds=0.05) as log:
        log.append(rows(0, 3))
        deadline = time.monotonic() + 10
        while not lake.exists(TABLE) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert written(lake)["prediction_id"].to_list() == [0, 1, 2]


def test_close_flushes_once_and_refuses_more_rows(lake: Lakehouse) -> None:
    log = PredictionLog(writer(lake), SCHEMA, flush_seconds=NEVER)
    log.append(rows(0, 3))
    log.close()
    log.close()
    assert written(lake).height == 3
    assert lake.version(TABLE) == 0
    with pytest.raises(RuntimeError, match="closed"):
        log.append(rows(3, 1))


def test_a_failed_write_keeps_its_rows_until_one_succeeds(
    lake: Lakehouse, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def flaky(frame: pl.DataFrame) -> object:
        calls.append(frame.height)
        if len(calls) == 1:
            raise OSError("object store unreachable")
        return lake.append(TABLE, frame)

    with PredictionLog(flaky, SCHEMA, flush_rows=4, flush_seconds=NEVER) as log:
        log.append(rows(0, 4))
        eventually(lambda: "writing 4 rows failed" in caplog.text)
        log.append(rows(4, 2))
        time.sleep(0.1)
        assert calls == [4], "appends wait for a timed flush while the store is failing"
        assert log.flush() == 6
        log.append(rows(6, 4))
        eventually(lambda: log.pending == 0)
    assert calls == [4, 6, 4]
    assert written(lake).equals(rows(0, 10))


def test_a_bad_frame_fails_at_append_naming_the_field(lake: Lakehouse) -> None:
    with PredictionLog(writer(lake), SCHEMA, flush_seconds=NEVER) as log:
        with pytest.raises(TypeError, match="'score' must hold Float64, not String"):
            log.append(rows(0, 2).with_columns(pl.col("score").cast(pl.String)))
        with pytest.raises(ValueError, match=r"missing fields \['arm'\]"):
            log.append(rows(0, 1).drop("arm"))
        with pytest.raises(ValueError, match=r"unexpected fields \['features'\]"):
            log.append(rows(0, 1).with_columns(features=pl.lit(1.0)))
        with pytest.raises(ValueError, match="in the order"):
            log.append(rows(0, 1).select(reversed(SCHEMA)))
        assert log.flush() == 0


def test_concurrent_appends_are_each_written_once() -> None:
    frames: list[pl.DataFrame] = []
    with PredictionLog(frames.append, SCHEMA, flush_rows=16, flush_seconds=0.01) as log:
        threads = [
            threading.Thread(
                target=lambda t=t: [log.append(rows(t * 1000 + i * 3, 3)) for i in range(50)]
            )
            for t in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    ids = pl.concat(frames)["prediction_id"].sort().to_list()
    assert ids == sorted(t * 1000 + i for t in range(8) for i in range(150))


def test_logs_what_a_crash_can_lose_and_each_flush(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="serving.prediction_log")
    with PredictionLog(lambda frame: None, SCHEMA, flush_rows=64, flush_seconds=1.5) as log:
        log.append(rows(0, 3))
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (
            logging.INFO,
            "prediction log: a crash loses the rows buffered since the last flush, "
            "at most 64 rows or 1.5 s of predictions",
        ),
        (logging.DEBUG, "prediction log: wrote 3 rows"),
    ]


KILLED = """
import functools, sys, time
import polars as pl
from resources.lakehouse import Lakehouse
from serving.prediction_log import PredictionLog

lake = Lakehouse(root_uri=sys.argv[1])
log = PredictionLog(
    functools.partial(lake.append, "monitoring/predictions"),
    {"prediction_id": pl.Int64, "score": pl.Float64},
    flush_rows=int(sys.argv[2]),
    flush_seconds=3600,
)
for first in range(0, int(sys.argv[3]), 8):
    ids = pl.Series(range(first, first + 8), dtype=pl.Int64)
    log.append(pl.DataFrame({"prediction_id": ids, "score": ids / 10}))
# The crash comes between writes: once the log's thread has caught up with the full buffers.
while log.pending >= int(sys.argv[2]):
    time.sleep(0.01)
print("appended", flush=True)
time.sleep(60)
"""


def test_a_killed_process_loses_only_its_buffer(lake: Lakehouse) -> None:
    flush_rows, appended = 32, 3 * 32 + 24
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED, lake.root_uri, str(flush_rows), str(appended)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line == "appended\n", process.stderr.read() if process.stderr else ""
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL

    kept = written(lake)["prediction_id"].to_list()
    assert kept == list(range(len(kept))), "the table holds a prefix of what was appended"
    assert appended - len(kept) < flush_rows
