"""Online lookup latency: our store against Feast and against the backend's bare key read.

For SQLite and Redis it times (a) single-entity lookups of 10 features and (b) 100-entity batch
lookups, three ways on the same data and the same requests:
  ours   - ``OnlineStore.read`` (returns a typed polars frame);
  anchor - Feast's ``get_online_features(...).to_dict()`` on the same store type;
  floor  - a bare primary-key read through the same client: sqlite3 ``SELECT * ... WHERE k = ?``
           (``IN (...)`` for a batch); redis HGETALL (pipelined for a batch).
It prints one JSON line per (backend, mode).

Feast is not a project dependency: it runs from a separate venv, through this same script in
``--feast-only`` mode, and first checks that it returns exactly our values for a sample. Setup
(``make bench`` does both; redis-server must be on the PATH):
    make bench-venv  # .venv-bench with feast[redis]==0.67.0
    .venv/bin/python bench/online.py
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VIEW = "bench"
KEY = "entity_id"
TS = "event_ts"
FEATURES = [f"f{i}" for i in range(5)] + [f"n{i}" for i in range(5)]  # 5 Float64, 5 Int64
BATCH = 100
MODES = ("single", "batch")
WARMUP = 100  # requests each contender runs per mode before timing starts
# Contenders take turns every CHUNK requests, so background load on the machine hits all alike.
CHUNK = {"single": 50, "batch": 5}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_data(path: Path, entities: int, seed: int) -> None:
    """Write the benchmark rows to parquet, so both interpreters load identical data."""
    import polars as pl

    rng = random.Random(seed)
    start = datetime(2024, 1, 1)
    data: dict[str, list[Any]] = {KEY: [f"e{i}" for i in range(entities)]}
    for name in FEATURES:
        if name.startswith("f"):
            data[name] = [rng.uniform(-1e3, 1e3) for _ in range(entities)]
        else:
            data[name] = [rng.randint(-(10**9), 10**9) for _ in range(entities)]
    data[TS] = [start + timedelta(seconds=rng.randint(0, 86_400)) for _ in range(entities)]
    schema = {name: pl.Float64 if name.startswith("f") else pl.Int64 for name in FEATURES}
    pl.DataFrame(data, schema={KEY: pl.String, **schema, TS: pl.Datetime("us")}).write_parquet(path)


def make_requests(entities: int, singles: int, batches: int, seed: int) -> dict[str, Any]:
    """The same lookups, drawn with a fixed seed, for every contender."""
    rng = random.Random(seed + 1)
    ids = [f"e{i}" for i in range(entities)]
    return {
        "single": [[rng.choice(ids)] for _ in range(singles)],
        "batch": [rng.sample(ids, BATCH) for _ in range(batches)],
    }


def timed(call: Callable[[list[str]], Any], requests: Sequence[list[str]]) -> list[float]:
    """Latency of each request in milliseconds."""
    latencies = []
    for request in requests:
        begin = time.perf_counter_ns()
        call(request)
        latencies.append((time.perf_counter_ns() - begin) / 1e6)
    return latencies


def p50_p99(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return round(pick(0.50), 4), round(pick(0.99), 4)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway, non-persistent redis-server on a free loopback port."""
    import redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- Feast side: runs in .venv-bench --------------------------------------------------------


def feast_side(backend: str, workdir: Path, redis_url: str | None) -> None:
    """Load the parquet rows into Feast and check a sample against ours, then time the chunks
    of requests the parent asks for on stdin, answering each with its latencies on stdout."""
    protocol, sys.stdout = sys.stdout, sys.stderr  # keep Feast's own output off the protocol
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.types import Float64, Int64, String

    if backend == "sqlite":
        online: dict[str, Any] = {"type": "sqlite", "path": str(workdir / "feast_online.db")}
    else:
        assert redis_url is not None
        host_port = redis_url.removeprefix("redis://").split("/")[0]
        online = {"type": "redis", "connection_string": host_port}
    repo = workdir / f"feast_{backend}"
    repo.mkdir()
    store = FeatureStore(
        config=RepoConfig(
            project="bench",
            provider="local",
            registry=str(repo / "registry.db"),
            online_store=online,
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
            repo_path=str(repo),
        )
    )
    entity = Entity(name="entity", join_keys=[KEY], value_type=ValueType.STRING)
    view = FeatureView(
        name=VIEW,
        entities=[entity],
        ttl=timedelta(0),
        schema=[Field(name=KEY, dtype=String)]
        + [Field(name=f, dtype=Float64 if f.startswith("f") else Int64) for f in FEATURES],
        source=FileSource(path=str(workdir / "data.parquet"), timestamp_field=TS),
        online=True,
    )
    store.apply([entity, view])
    frame = pd.read_parquet(workdir / "data.parquet")
    store.write_to_online_store(VIEW, frame)
    refs = [f"{VIEW}:{f}" for f in FEATURES]

    def lookup(ids: list[str]) -> dict[str, list[Any]]:
        return store.get_online_features(features=refs, entity_rows={KEY: ids}).to_dict()

    expected = json.loads((workdir / "expected.json").read_text())
    got = lookup(expected[KEY])
    for name in FEATURES:
        if got[name] != expected[name]:
            raise AssertionError(f"Feast and our store disagree on {name} ({backend})")
    requests = json.loads((workdir / "requests.json").read_text())
    for mode in MODES:
        timed(lookup, requests[mode][:WARMUP])
    print(json.dumps({"ready": True}), file=protocol, flush=True)
    for line in sys.stdin:
        chunk = json.loads(line)
        latencies = timed(lookup, requests[chunk["mode"]][chunk["start"] : chunk["stop"]])
        print(json.dumps(latencies), file=protocol, flush=True)


# --- Our side: runs in the project venv -------------------------------------------------------


def floor_lookups(backend: str, url: str) -> dict[str, Callable[[list[str]], Any]]:
    """Bare primary-key reads through the same client library and settings as our store."""
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        single = f'SELECT * FROM "{VIEW}" WHERE "{KEY}" = ?'
        batch = f'SELECT * FROM "{VIEW}" WHERE "{KEY}" IN ({", ".join("?" * BATCH)})'
        return {
            "single": lambda ids: conn.execute(single, ids).fetchone(),
            "batch": lambda ids: conn.execute(batch, ids).fetchall(),
        }
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)

    def pipelined(ids: list[str]) -> list[Any]:
        with client.pipeline(transaction=False) as pipe:
            for entity_id in ids:
                pipe.hgetall(f"fs:{VIEW}:{entity_id}")
            return pipe.execute()

    return {"single": lambda ids: client.hgetall(f"fs:{VIEW}:{ids[0]}"), "batch": pipelined}


def bench_backend(backend: str, url: str, workdir: Path, feast_python: str) -> list[dict]:
    import polars as pl

    sys.path.insert(0, str(ROOT))
    from feature_store.online import open_online_store

    requests = json.loads((workdir / "requests.json").read_text())
    store = open_online_store(url)
    begin = time.perf_counter()
    store.write(VIEW, pl.read_parquet(workdir / "data.parquet"), entity_key=KEY, timestamp=TS)
    log(f"{backend}: our store loaded in {time.perf_counter() - begin:.1f}s")
    sample = [*requests["batch"][0][:50], "no-such-entity"]
    expected = store.read(VIEW, sample, FEATURES).drop(TS).to_dict(as_series=False)
    (workdir / "expected.json").write_text(json.dumps(expected))

    begin = time.perf_counter()
    command = [feast_python, __file__, "--feast-only", backend, "--workdir", str(workdir)]
    if backend == "redis":
        command += ["--redis-url", url]
    feast = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert feast.stdin is not None and feast.stdout is not None
    if not feast.stdout.readline():
        sys.exit(f"the Feast side failed ({backend}), see its output above")
    log(f"{backend}: Feast loaded and agrees with our values ({time.perf_counter() - begin:.1f}s)")

    def feast_chunk(mode: str, start: int, stop: int) -> list[float]:
        feast.stdin.write(json.dumps({"mode": mode, "start": start, "stop": stop}) + "\n")
        feast.stdin.flush()
        return json.loads(feast.stdout.readline())

    floors = floor_lookups(backend, url)

    def run(name: str, mode: str, start: int, stop: int) -> list[float]:
        if name == "feast":
            return feast_chunk(mode, start, stop)
        call = floors[mode] if name == "floor" else lambda ids: store.read(VIEW, ids, FEATURES)
        return timed(call, requests[mode][start:stop])

    lines = []
    for mode in MODES:
        run("ours", mode, 0, WARMUP)
        run("floor", mode, 0, WARMUP)
        results: dict[str, list[float]] = {"ours": [], "feast": [], "floor": []}
        names = list(results)
        for turn, start in enumerate(range(0, len(requests[mode]), CHUNK[mode])):
            stop = min(start + CHUNK[mode], len(requests[mode]))
            for name in names[turn % 3 :] + names[: turn % 3]:
                results[name] += run(name, mode, start, stop)
        p50, p99 = p50_p99(results["ours"])
        anchor_p50, anchor_p99 = p50_p99(results["feast"])
        _, floor_p99 = p50_p99(results["floor"])
        lines.append(
            {
                "bench": "online",
                "backend": backend,
                "mode": "single" if mode == "single" else f"batch{BATCH}",
                "p50_ms": p50,
                "p99_ms": p99,
                "anchor": "feast",
                "anchor_p50_ms": anchor_p50,
                "anchor_p99_ms": anchor_p99,
                "floor_p99_ms": floor_p99,
                "ratio": round(anchor_p99 / p99, 2),
                "floor_ratio": round(p99 / floor_p99, 2),
            }
        )
    feast.stdin.close()
    feast.wait(timeout=60)
    store.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--singles", type=int, default=5_000)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "redis"])
    parser.add_argument("--feast-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--feast-only", choices=["sqlite", "redis"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.feast_only:
        feast_side(args.feast_only, args.workdir, args.redis_url)
        return
    if not Path(args.feast_python).exists():
        sys.exit(f"{args.feast_python} not found: create .venv-bench with `make bench-venv`")
    with tempfile.TemporaryDirectory(prefix="bench-online-") as tmp:
        workdir = Path(tmp)
        make_data(workdir / "data.parquet", args.entities, args.seed)
        requests = make_requests(args.entities, args.singles, args.batches, args.seed)
        (workdir / "requests.json").write_text(json.dumps(requests))
        for backend in args.backends:
            if backend == "sqlite":
                lines = bench_backend(
                    backend, f"sqlite:///{workdir}/ours.db", workdir, args.feast_python
                )
            else:
                with redis_server() as url:
                    lines = bench_backend(backend, url, workdir, args.feast_python)
            for line in lines:
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
