"""Scale-out benchmark: what the production profile's executor and object store cost or buy.

    python bench/scaleout.py [--days N] [--transactions-per-day N] [--workdir DIR]

Generates seeded landing data for ``--days`` days once, then measures:

- ``executor``: the ``daily_ingest`` job (bronze, silver, gold, features, online store) over every
  day, one run per day as the schedule makes them, with Dagster's multiprocess executor at two
  workers against the in-process executor (the anchor); each on a fresh local lake and a
  SQLite instance. The ratio is the speedup: above 1, two workers win. Each step of a
  multiprocess run starts a Python process that loads the definitions, a fixed cost per step
  that larger days amortize.
- ``step_start``: what each step process (a pod under ``STEP_PODS``) pays before any work: a
  fresh interpreter that imports the project and builds the definitions, against one that only
  imports dagster (the anchor, the floor of any Dagster step); the median of three of each.
- ``s3_lake``: the same ``Lakehouse.write_partition`` of every day's silver transactions, then
  ``scan_days`` of the whole table, into a lake on moto's S3 server on loopback against a lake on
  local disk (the anchor). The ratio is the S3 lake's time over local disk's: what the object
  store path (delta-rs' writer, HTTP, conditional commits) costs before any network latency.

One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import boto3
import dagster as dg
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from definitions import build_definitions
from reference_data import GeneratorConfig, generate
from resources.lakehouse import Lakehouse
from resources.settings import Settings, s3_storage_options

KEY = "bench-scaleout-pseudonymization-key"
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
}


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def daily_ingest() -> dg.JobDefinition:
    """The job as a step process rebuilds it: from the settings in its environment."""
    return build_definitions(Settings.from_env()).resolve_job_def("daily_ingest")


def days_of(config: GeneratorConfig) -> list[str]:
    return [(config.start + timedelta(days=i)).isoformat() for i in range(config.days)]


def run_days(home: Path, landing: Path, days: list[str], workers: int | None) -> float:
    """Seconds to ingest every day into a fresh platform home; ``workers`` None is in-process."""
    os.environ.update(
        {"PLATFORM_HOME": str(home), "LANDING_URI": str(landing), "PIPELINE_START_DATE": days[0]}
    )
    (home / "dagster").mkdir(parents=True)
    with dg.DagsterInstance.local_temp(str(home / "dagster")) as instance:
        started = time.perf_counter()
        for day in days:
            if workers is None:
                result = daily_ingest().execute_in_process(partition_key=day, instance=instance)
            else:
                with dg.execute_job(
                    dg.reconstructable(daily_ingest),
                    instance=instance,
                    run_config={"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}},
                    tags={"dagster/partition": day},
                ) as result:
                    pass
            if not result.success:
                raise SystemExit(f"daily_ingest {day} failed (workers={workers})")
        return time.perf_counter() - started


def bench_executor(config: GeneratorConfig, landing: Path, workdir: Path) -> Path:
    """Times both executors; returns the in-process run's home (its lake feeds the S3 bench)."""
    days = days_of(config)
    homes = {name: workdir / name for name in ("in_process", "multiprocess")}
    for home in homes.values():
        shutil.rmtree(home, ignore_errors=True)
    log(f"in-process executor over {len(days)} days")
    anchor = run_days(homes["in_process"], landing, days, None)
    log(f"multiprocess executor (2 workers) over {len(days)} days")
    ours = run_days(homes["multiprocess"], landing, days, 2)
    emit(
        {
            "bench": "scaleout",
            "stage": "executor",
            "days": len(days),
            "transactions_per_day": config.transactions_per_day,
            "seconds": round(ours, 3),
            "anchor": "in_process_executor",
            "anchor_seconds": round(anchor, 3),
            "ratio": round(anchor / ours, 2),
            "cpus": os.cpu_count(),
            "load_avg": round(os.getloadavg()[0], 2),
        }
    )
    return homes["in_process"]


def fresh_process_seconds(code: str, repeats: int = 3) -> float:
    """The median wall time of a new interpreter running ``code`` from the project root."""
    root = Path(__file__).resolve().parents[1]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def bench_step_start() -> None:
    log("step start: a fresh process building the definitions, and one importing dagster")
    anchor = fresh_process_seconds("import dagster")
    ours = fresh_process_seconds(
        "from definitions import build_definitions; from resources import Settings; "
        "build_definitions(Settings.from_env())"
    )
    emit(
        {
            "bench": "scaleout",
            "stage": "step_start",
            "seconds": round(ours, 3),
            "anchor": "import_dagster",
            "anchor_seconds": round(anchor, 3),
            "ratio": round(ours / anchor, 2),
            "load_avg": round(os.getloadavg()[0], 2),
        }
    )


def moto_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        raise SystemExit("moto_server not found: install the dev extra (moto[server])")
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                process.terminate()
                raise


def write_and_read(lakehouse: Lakehouse, days: dict[str, pl.DataFrame]) -> float:
    started = time.perf_counter()
    for day, frame in days.items():
        lakehouse.write_partition("silver/transactions", frame, day)
    read = lakehouse.scan_days("silver/transactions")
    assert read is not None
    rows = read[0].collect().height
    assert rows == sum(frame.height for frame in days.values())
    return time.perf_counter() - started


def bench_s3_lake(source: Lakehouse, workdir: Path) -> None:
    silver = source.scan("silver/transactions").collect()
    days = {
        day: silver.filter(pl.col("_partition_date") == day)
        for day in sorted(silver["_partition_date"].unique())
    }
    local = Lakehouse(root_uri=str(workdir / "local_lake"))
    shutil.rmtree(local.root_uri, ignore_errors=True)
    process, endpoint = moto_server()
    try:
        boto3.client("s3", endpoint_url=endpoint, **_boto_keys()).create_bucket(Bucket="lake")
        root = "s3://lake/bench"
        s3 = Lakehouse(
            root_uri=root,
            storage_options=s3_storage_options(root, {"AWS_ENDPOINT_URL": endpoint}),
        )
        log(f"lake on local disk, then on moto's S3: {len(days)} days written and read")
        anchor = write_and_read(local, days)
        ours = write_and_read(s3, days)
    finally:
        process.terminate()
        process.wait(timeout=10)
    emit(
        {
            "bench": "scaleout",
            "stage": "s3_lake",
            "days": len(days),
            "rows": silver.height,
            "seconds": round(ours, 3),
            "anchor": "local_disk_lake",
            "anchor_seconds": round(anchor, 3),
            "ratio": round(ours / anchor, 2),
            "load_avg": round(os.getloadavg()[0], 2),
        }
    )


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_KEYS["AWS_REGION"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--transactions-per-day", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "scaleout")
    args = parser.parse_args(argv)

    os.environ.setdefault("PSEUDONYMIZATION_KEY", KEY)
    os.environ.update(S3_KEYS)  # where delta-rs and boto3 read the keys of the S3 lake
    config = GeneratorConfig(
        seed=3,
        start=date(2024, 6, 1),
        days=args.days,
        customers=max(args.transactions_per_day // 10, 100),
        merchants=max(args.transactions_per_day // 200, 20),
        transactions_per_day=args.transactions_per_day,
        drift_start_day=None,
    )
    landing = args.workdir / "landing"
    shutil.rmtree(landing, ignore_errors=True)
    generate(config, landing)
    bench_step_start()
    home = bench_executor(config, landing, args.workdir)
    bench_s3_lake(Lakehouse(root_uri=str(home / "lake")), args.workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
