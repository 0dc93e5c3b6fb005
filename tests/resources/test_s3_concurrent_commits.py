"""Writers racing on one Delta table on S3 lose no commit: every commit is a conditional put.

Two writers (threads: delta-rs commits without the GIL) commit to the same table of a moto S3
server, meeting at a barrier before each commit so they race for the same version every round.
Without conditional puts (a store that ignores ``If-None-Match``) the loser's commit file
silently replaces the winner's, and rows and versions go missing; with them, the loser retries
at the next version.
"""

from __future__ import annotations

import threading
import uuid

import polars as pl
import pytest
from deltalake import DeltaTable

from resources.lakehouse import Lakehouse
from resources.settings import s3_storage_options
from tests.resources.test_s3_lakehouse import CREDENTIALS, s3_client, s3_endpoint  # noqa: F401 (a fixture)

WRITERS = 2
COMMITS = 6
DAYS = 3
"""Days each writer owns and rewrites in turn in the daily table."""


def _write(lakehouse: Lakehouse, writer: int, mode: str, barrier: threading.Barrier) -> None:
    """One writer's commits: appends to the log table, or days of its own to the daily table."""
    for commit in range(COMMITS):
        rows = pl.DataFrame({"writer": [writer] * 3, "commit": [commit] * 3, "row": [0, 1, 2]})
        barrier.wait(timeout=60)
        if mode == "append":
            lakehouse.append("log", rows)
        else:
            # A backfill on two workers: each writer's days are its own month's.
            day = f"2024-{writer + 1:02d}-{commit % DAYS + 1:02d}"
            lakehouse.write_partition("daily", rows, day)


@pytest.mark.parametrize("mode", ["append", "partition"])
def test_concurrent_writers_lose_no_commit(s3_endpoint: str, mode: str) -> None:  # noqa: F811
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/lake"
    options = s3_storage_options(root, {"AWS_ENDPOINT_URL": s3_endpoint, **CREDENTIALS})
    table = "log" if mode == "append" else "daily"
    # The table exists before the race: creating it is a race of its own, for version 0.
    seed = pl.DataFrame({"writer": [-1], "commit": [-1], "row": [-1]})
    lakehouse = Lakehouse(root_uri=root, storage_options=options)
    if mode == "append":
        lakehouse.append(table, seed)
    else:
        lakehouse.write_partition(table, seed, "2000-01-01")

    barrier = threading.Barrier(WRITERS)
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            _write(lakehouse, writer, mode, barrier)
        except BaseException as error:
            failures.append(error)
            barrier.abort()

    writers = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert not failures

    history = DeltaTable(lakehouse.table_uri(table), storage_options=options).history()
    assert sorted(entry["version"] for entry in history) == list(range(WRITERS * COMMITS + 1))
    frame = lakehouse.scan(table).collect().filter(pl.col("writer") >= 0)
    if mode == "append":
        assert frame.height == WRITERS * COMMITS * 3
        commits = frame.select("writer", "commit").unique()
        assert commits.height == WRITERS * COMMITS
    else:
        # Every day holds the rows of its writer's last commit to it, exactly once.
        days = frame.group_by("_partition_date").agg(pl.len(), pl.col("commit").max())
        assert days.height == WRITERS * DAYS
        assert days["len"].to_list() == [3] * days.height
        assert set(days["commit"]) == set(range(COMMITS - DAYS, COMMITS))
