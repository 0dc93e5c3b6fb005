"""Online serving under load: our fraud service, batched and not, against seed 000's design.

    python bench/serving.py [--duration 15] [--levels 1,4,16,64] [--platform-home DIR]
                            [--requests 20000] [--contenders anchor,batched,unbatched,int8]

A closed-loop load on loopback (aiohttp; each of N connections sends its next request as soon as
the last one answers, for a fixed duration per level) against four contenders, one at a time:

- ``anchor-fastapi-pickle-redis``: seed 000's design (``bench/serving_anchor.py``): FastAPI under
  uvicorn, one worker, the model unpickled from disk, one Redis ``GET`` per feature through a
  synchronous client in an async handler, one request at a time;
- ``batched``: our service (``serving.service``) as the champion's Bento was built, adaptive
  batching on, served by ``LocalTarget`` and measured through its stable port, as users reach it;
- ``unbatched``: the same with ``max_batch_size`` 1;
- ``batched-onnx-int8``: batched, with the model on onnxruntime with INT8 weights.

All read the same features, from one throwaway redis-server seeded from the platform home's
offline feature tables (ours through ``RedisOnlineStore``, the anchor's keys written from the rows
our online retrieval returns), and score the same model: the champion in the newest ``fraud_api``
Bento under ``$PLATFORM_HOME/bentoml``. Its bundle is rebuilt with this checkout's code into a
temporary BentoML home, so the user's Bento store, lake and online store are left as they were.
Each request is one real silver payment (customer, merchant, amount, channel, device), timed just
after the newest feature row; the bench cycles through them so requests differ.

One JSON line per (contender, level): ``rps``, ``p50_ms``/``p95_ms``/``p99_ms``, ``errors`` (non-200
or no answer) and ``ratio``, rps over the anchor's at the same level. Then per contender its best
rps among the levels within the p99 budget (10 ms, zero errors) and ``ratio`` over the anchor's
best within the same budget (goal: at least 3); the INT8 model's one-row latency over torch's, in
process and through the service at one connection; and where the time of one request goes in
``Scoring.score`` (the online read against the model), which says whether a feature cache could pay.
Progress goes to stderr. Needs redis-server on the PATH and a platform home with a deployed Bento.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import polars as pl
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from online import redis_server  # bench/online.py, beside this file

from factories.deployments import BENTOFILE, copy_sources
from feature_store.offline import push_latest
from feature_store.online import RedisOnlineStore
from feature_store.views import EVENT_TIMESTAMP, EventWindow, FeatureView, parse_reference
from registry import Registry, discover
from resources.serving import ServingTarget
from serving.bundle import Bundle
from serving.edge import load_scorer
from serving.scoring import CHAMPION, Scoring
from training.data import encode_inputs
from training.sets import TrainingSet, feature_references, online_features
from training.trainer import load

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = "anchor-fastapi-pickle-redis"
CONTENDERS = {
    "anchor": ANCHOR,
    "batched": "batched",
    "unbatched": "unbatched",
    "int8": "batched-onnx-int8",
}
P99_BUDGET_MS = 10.0
GOAL_RATIO = 3.0
TOKEN = "bench-serving-token"
WARMUP_S = 2.0
REQUEST_TIMEOUT_S = 30.0
START_TIMEOUT_S = 120.0
PARITY_REQUESTS = 16
PROFILE_REPEATS = 500
EXCEPTION = re.compile(r"^[\w.]+(Error|Exception|Unavailable)\b.*")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile_ms(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


# --- The data: features in Redis, requests from silver ---------------------------------------


def newest_bento(bentoml_home: Path, name: str = "fraud_api") -> Path:
    """The ``src`` of the Bento BentoML marks latest: the champion the demo deployed."""
    folder = bentoml_home / "bentos" / name
    latest = folder / "latest"
    if not latest.is_file():
        sys.exit(f"no {name} Bento under {bentoml_home}: run `make demo` first")
    return folder / latest.read_text().strip() / "src"


def offline_table(lake: Path, view: FeatureView) -> pl.DataFrame | None:
    """The view's offline table. When the lake lacks it, a view without ttl (a profile, which
    needs no window) is computed from its source; any other reads as null."""
    table = lake / view.table
    if (table / "_delta_log").is_dir():
        return pl.read_delta(str(table))
    source = lake.joinpath(*view.source)
    if view.ttl or not (source / "_delta_log").is_dir():
        log(f"{view.table} is missing: its features read as null")
        return None
    log(f"{view.table} is missing: computing it from {'/'.join(view.source)}")
    window = EventWindow(datetime(1970, 1, 1), datetime(2100, 1, 1))
    return view.transform(pl.scan_delta(str(source)), window).collect()


def seed_store(url: str, lake: Path, registry: Registry, spec: TrainingSet) -> datetime:
    """Push the newest row per entity of each view the model reads; the newest time pushed."""
    store = RedisOnlineStore(url)
    newest = datetime(1970, 1, 1)
    refs = feature_references(spec, registry.request_features)
    for name in dict.fromkeys(parse_reference(r)[0] for r in refs):
        view = registry.views[name]
        frame = offline_table(lake, view)
        if frame is None:
            continue
        written = push_latest(store, view, frame)
        newest = max(newest, frame[EVENT_TIMESTAMP].max())  # type: ignore[type-var]
        log(f"redis: {name} pushed, {written} entities")
    store.close()
    return newest


def request_rows(lake: Path, fields: Sequence[str], count: int, at: datetime) -> pl.DataFrame:
    """``count`` real payments (seeded sample of silver), each arriving at ``at``."""
    payments = pl.read_delta(str(lake / "silver" / "transactions")).select(*fields)
    payments = payments.sample(min(count, payments.height), seed=7, shuffle=True)
    return payments.with_columns(pl.lit(at, dtype=pl.Datetime("us")).alias("event_time"))


def bodies_of(requests: pl.DataFrame) -> list[bytes]:
    """One ``POST /predict`` body per payment, encoded once so the load loop only sends."""
    rows = requests.with_columns(pl.col("event_time").dt.to_string("%Y-%m-%dT%H:%M:%S.%f"))
    return [json.dumps({"transactions": [row]}).encode() for row in rows.to_dicts()]


def text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(value) if isinstance(value, float) else str(value)


def seed_anchor(url: str, rows: pl.DataFrame, features: list[dict[str, str]]) -> int:
    """The anchor's keys ``feat:{view}:{entity}:{feature}``, from the very values our retrieval
    returned for these requests, so both score identical inputs; a null is no key."""
    client = redis.Redis.from_url(url, decode_responses=True)
    written = 0
    with client.pipeline(transaction=False) as pipe:
        for feature in features:
            entity, name = feature["entity"], feature["name"]
            for entity_id, value in rows.select(entity, name).unique(entity).iter_rows():
                if value is not None:
                    pipe.set(f"feat:{feature['view']}:{entity_id}:{name}", text(value))
                    written += 1
        pipe.execute()
    client.close()
    return written


# --- The load ---------------------------------------------------------------------------------


@dataclass
class Level:
    """One level's outcome. Throughput and percentiles count the requests answered 200; a
    refused or failed one is an error (a fast 503 must not pass for throughput)."""

    connections: int
    seconds: float
    answered_ms: list[float]
    errors: int
    first_error: str | None

    @property
    def rps(self) -> float:
        return len(self.answered_ms) / self.seconds

    @property
    def p99_ms(self) -> float | None:
        return percentile_ms(self.answered_ms, 99)

    def within(self, budget_ms: float) -> bool:
        return self.errors == 0 and self.p99_ms is not None and self.p99_ms <= budget_ms

    def line(self, contender: str, anchor_rps: float | None) -> dict[str, Any]:
        return {
            "bench": "serving",
            "contender": contender,
            "connections": self.connections,
            "duration_s": round(self.seconds, 2),
            "requests": len(self.answered_ms) + self.errors,
            "rps": round(self.rps, 1),
            "p50_ms": percentile_ms(self.answered_ms, 50),
            "p95_ms": percentile_ms(self.answered_ms, 95),
            "p99_ms": self.p99_ms,
            "errors": self.errors,
            "anchor": ANCHOR,
            "ratio": round(self.rps / anchor_rps, 2) if anchor_rps else None,
        }


async def drive(
    url: str, bodies: list[bytes], order: Iterator[int], connections: int, seconds: float
) -> Level:
    """``connections`` clients in a closed loop for ``seconds``; each keeps its connection."""
    answered: list[float] = []
    errors = 0
    first_error: str | None = None
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as s:
        began = time.perf_counter()
        deadline = began + seconds

        async def client() -> None:
            nonlocal errors, first_error
            while time.perf_counter() < deadline:
                body = bodies[next(order) % len(bodies)]
                sent = time.perf_counter()
                try:
                    async with s.post(url, data=body) as response:
                        answer = await response.read()
                        failed = None if response.status == 200 else f"{response.status} {answer!r}"
                except (aiohttp.ClientError, TimeoutError) as error:
                    failed = repr(error)
                if failed is None:
                    answered.append((time.perf_counter() - sent) * 1e3)
                else:
                    errors += 1
                    first_error = first_error or failed[:300]

        await asyncio.gather(*(client() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return Level(connections, elapsed, answered, errors, first_error)


def run_levels(
    contender: str, url: str, bodies: list[bytes], levels: Sequence[int], seconds: float
) -> list[Level]:
    """A short warm-up, then each level in turn; requests continue the cycle across levels."""
    order = itertools.count()
    asyncio.run(drive(url, bodies, order, 4, WARMUP_S))
    results = []
    for connections in levels:
        level = asyncio.run(drive(url, bodies, order, connections, seconds))
        log(
            f"{contender} x{connections}: {level.rps:.0f} rps, p99 {level.p99_ms} ms, "
            f"{level.errors} errors (load average {os.getloadavg()[0]:.1f})"
        )
        if level.first_error:
            log(f"  first error: {level.first_error}")
        results.append(level)
    return results


def probabilities(url: str, bodies: list[bytes]) -> list[float]:
    """Answers to the first requests, one at a time, to check every contender scores alike."""
    found = []
    for body in bodies[:PARITY_REQUESTS]:
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            found.append(float(json.loads(response.read())[0]["probability"]))
    return found


# --- The contenders ---------------------------------------------------------------------------


@contextmanager
def anchor_service(workdir: Path, manifest: dict[str, Any]) -> Iterator[str]:
    """``bench/serving_anchor.py`` under uvicorn, one worker, on a free port."""
    (workdir / "anchor.json").write_text(json.dumps(manifest))
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "serving_anchor:app", "--app-dir", str(ROOT)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--log-level", "warning", "--no-access-log"]
    environment = {**os.environ, "ANCHOR_MANIFEST": str(workdir / "anchor.json")}
    # The repository first (the pickle names training.trainer), bench/ after it: bench/training.py
    # must not shadow the training package.
    paths = [str(ROOT / "bench"), os.getenv("PYTHONPATH")]
    environment["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    with (workdir / "anchor.log").open("ab") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (workdir / "anchor.log").read_text()[-3000:]
                    raise RuntimeError(f"the anchor did not start:\n{tail}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/predict"
    finally:
        process.terminate()
        process.wait(timeout=10)


def variants(bento_src: Path, registry: Registry) -> dict[str, dict[str, Any]]:
    """The bundle of each of our contenders: as built, unbatched, INT8 weights."""
    built = json.loads((bento_src / "bundle" / "bundle.json").read_text())
    declared = registry.deployments[built["deployment"]]
    runtime = built.get("runtime", declared.runtime)
    batching = built.get("batching", vars(declared.batching))
    return {
        "batched": {**built, "runtime": runtime, "batching": batching},
        "unbatched": {**built, "runtime": runtime, "batching": {**batching, "max_batch_size": 1}},
        "batched-onnx-int8": {**built, "runtime": "onnx-int8", "batching": batching},
    }


def build_context(directory: Path, bento_src: Path, bundle: dict[str, Any]) -> Path:
    """This checkout's code with the Bento's models and ``bundle``: the service as it is now."""
    copy_sources(directory)
    shutil.copytree(bento_src / "bundle", directory / "bundle")
    (directory / "bundle" / "bundle.json").write_text(json.dumps(bundle, indent=2))
    (directory / "bentofile.yaml").write_text(BENTOFILE)
    return directory


def proxy_line(proxy: Level, bare: Level) -> dict[str, Any]:
    """What the stable port costs: one connection through the supervisor's proxy and straight
    to the backend behind it, back to back."""
    p50 = percentile_ms(proxy.answered_ms, 50)
    bare_p50 = percentile_ms(bare.answered_ms, 50)
    return {
        "bench": "serving",
        "measure": "stable_port_one_connection",
        "contender": "batched",
        "p50_ms": p50,
        "p99_ms": proxy.p99_ms,
        "backend_p50_ms": bare_p50,
        "backend_p99_ms": bare.p99_ms,
        "ratio": round(p50 / bare_p50, 3) if p50 and bare_p50 else None,
    }


def log_failures(state_dir: Path) -> None:
    """Why the newest backend refused requests: its exceptions, counted by their last line."""
    backends = sorted(state_dir.rglob("backend-*.log"), key=lambda p: p.stat().st_mtime)
    if not backends:
        return
    lines = backends[-1].read_text(errors="replace").splitlines()
    failures = Counter(line for line in lines if EXCEPTION.match(line))
    for failure, count in failures.most_common(5):
        log(f"  {count} x {failure[:200]}")


# --- In-process measurements ------------------------------------------------------------------


def runtime_lines(bundle_dir: Path, folder: str, row: pl.DataFrame) -> list[dict[str, Any]]:
    """One row scored by each runtime: the model call alone (``predict``) and with the encoding
    every runtime shares (``score``), all timed back to back, so load from elsewhere hits them
    alike; ``ratio`` is a runtime's p50 over torch's."""
    scorers = {r: load_scorer(bundle_dir / folder, r) for r in ("torch", "onnx", "onnx-int8")}
    calls: dict[tuple[str, str], Callable[[], object]] = {}
    for runtime, scorer in scorers.items():
        categorical, numeric = encode_inputs(row, scorer.columns, scorer.encoding)
        inputs = (categorical.numpy(), numeric.numpy())
        calls[runtime, "predict"] = lambda s=scorer, i=inputs: s.predict(*i)
        calls[runtime, "score"] = lambda s=scorer: s.score(row)
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    for repeat in range(PROFILE_REPEATS + 20):
        for key, call in calls.items():
            begin = time.perf_counter()
            call()
            if repeat >= 20:  # warm-up
                seconds[key].append(time.perf_counter() - begin)
    p50 = {key: float(np.median(values)) * 1e3 for key, values in seconds.items()}
    return [
        {
            "bench": "serving",
            "measure": "runtime_one_row",
            "runtime": runtime,
            "predict_p50_ms": round(p50[runtime, "predict"], 4),
            "score_p50_ms": round(p50[runtime, "score"], 4),
            "reference": "torch",
            "ratio": round(p50[runtime, "predict"] / p50["torch", "predict"], 3),
            "score_ratio": round(p50[runtime, "score"] / p50["torch", "score"], 3),
        }
        for runtime in scorers
    ]


def request_path_lines(
    scoring: Scoring, store: RedisOnlineStore, url: str, requests: pl.DataFrame
) -> list[dict[str, Any]]:
    """Where ``Scoring.score``'s time goes for 1 and 64 rows: the online read (one round trip
    per view), the model (encoding included), and the rest (routing, answers, log rows); with
    the read's network floor, what a feature cache could save at most."""
    client = redis.Redis.from_url(url)
    scorer = scoring.models[CHAMPION].scorer
    reads = by_view(scoring)

    def hmget_views(client: redis.Redis, batch: pl.DataFrame) -> None:
        """The network floor of the read: one pipelined HMGET per view, nothing decoded."""
        for view, (key, names) in reads.items():
            with client.pipeline(transaction=False) as pipe:
                for entity_id in batch[key].to_list():
                    pipe.hmget(f"fs:{view}:{entity_id}", names)
                pipe.execute()

    def timed(call: Callable[[], Any]) -> tuple[float, Any]:
        begin = time.perf_counter()
        result = call()
        return (time.perf_counter() - begin) * 1e3, result

    lines = []
    for rows in (1, 64):
        starts = range(0, requests.height - rows + 1, rows)[:256]
        batches = [requests.slice(i, rows) for i in starts]
        parts: dict[str, list[float]] = {
            k: [] for k in ("floor", "read", "model", "whole", "rest", "log")
        }
        # The parts of one batch are timed back to back, so load from elsewhere hits them alike.
        for repeat, batch in enumerate(itertools.islice(itertools.cycle(batches), PROFILE_REPEATS)):
            floor, _ = timed(lambda b=batch: hmget_views(client, b))
            read, features = timed(
                lambda b=batch: online_features(
                    scoring.spec, store, b, scoring.views, scoring.request_features
                )
            )
            model, _ = timed(lambda f=features: scorer.score(f))
            whole, scored = timed(lambda b=batch: scoring.score(b, store))
            log_rows, _ = timed(lambda s=scored: s.log.to_dicts())
            if repeat >= 20:  # warm-up
                for name, value in zip(
                    parts, (floor, read, model, whole, whole - read - model, log_rows), strict=True
                ):
                    parts[name].append(value)
        p50 = {name: round(float(np.median(values)), 4) for name, values in parts.items()}
        lines.append(
            {
                "bench": "serving",
                "measure": "request_path",
                "rows": rows,
                "score_p50_ms": p50["whole"],
                "online_features_p50_ms": p50["read"],
                "model_p50_ms": p50["model"],
                "rest_p50_ms": p50["rest"],
                "log_to_dicts_p50_ms": p50["log"],
                "redis_hmget_per_view_p50_ms": p50["floor"],
                "views_read": len(reads),
            }
        )
    client.close()
    return lines


def by_view(scoring: Scoring) -> dict[str, tuple[str, list[str]]]:
    """Each view the model reads: its join key and the features read from it."""
    reads: dict[str, tuple[str, list[str]]] = {}
    for reference in feature_references(scoring.spec, scoring.request_features):
        view, name = parse_reference(reference)
        reads.setdefault(view, (scoring.views[view].entity.join_key, []))[1].append(name)
    return reads


# --- The run ----------------------------------------------------------------------------------


def summary_lines(
    results: dict[str, list[Level]], drifts: dict[str, float]
) -> list[dict[str, Any]]:
    """Each contender's best rps within the p99 budget, over the anchor's within it, and how
    far its scores were from the anchor's on the same requests (same model, same features)."""

    def best(levels: list[Level]) -> Level | None:
        within = [level for level in levels if level.within(P99_BUDGET_MS)]
        return max(within, key=lambda level: level.rps, default=None)

    rps = {}
    for contender, levels in results.items():
        level = best(levels)
        rps[contender] = (level, level.rps if level else None)
    anchor_rps = rps.get(ANCHOR, (None, None))[1]
    lines = []
    for contender, (level, value) in rps.items():
        lines.append(
            {
                "bench": "serving",
                "summary": "p99_budget",
                "contender": contender,
                "p99_budget_ms": P99_BUDGET_MS,
                "connections": level.connections if level else None,
                "rps": round(value, 1) if value else None,
                "p99_ms": level.p99_ms if level else None,
                "anchor_rps": round(anchor_rps, 1) if anchor_rps else None,
                "ratio": round(value / anchor_rps, 2) if value and anchor_rps else None,
                "goal_ratio": GOAL_RATIO,
                "max_abs_diff_vs_anchor": drifts.get(contender),
            }
        )
    return lines


def anchor_manifest(
    workdir: Path,
    url: str,
    model_dir: Path,
    threshold: float,
    rows: pl.DataFrame,
    features: list[dict[str, str]],
) -> dict[str, Any]:
    """The anchor's model as the pickle its design loads, and what it needs to read features."""
    model = load(model_dir)
    with (workdir / "model.pkl").open("wb") as file:
        pickle.dump(model, file)
    return {
        "redis_url": url,
        "model": str(workdir / "model.pkl"),
        "threshold": threshold,
        "features": features,
        "schema": {
            name: type(rows.schema[name]).__name__
            for name in (*model.columns.categorical, *model.columns.numeric)
        },
    }


def stored_features(registry: Registry, spec: TrainingSet) -> list[dict[str, str]]:
    """Each stored feature the model reads: its view, the request field keying it, its dtype."""
    found = []
    for reference in feature_references(spec, registry.request_features):
        view, name = parse_reference(reference)
        found.append(
            {
                "view": view,
                "entity": registry.views[view].entity.join_key,
                "name": name,
                "dtype": type(registry.views[view].feature(name).dtype).__name__,
            }
        )
    return found


def int8_line(results: dict[str, list[Level]]) -> dict[str, Any] | None:
    """The INT8 service's p50 at one connection over the torch one's."""
    int8 = {level.connections: level for level in results.get("batched-onnx-int8", [])}
    reference = {level.connections: level for level in results.get("batched", [])}
    if 1 not in int8 or 1 not in reference:
        return None
    p50 = percentile_ms(int8[1].answered_ms, 50)
    reference_p50 = percentile_ms(reference[1].answered_ms, 50)
    return {
        "bench": "serving",
        "measure": "service_p50_one_connection",
        "contender": "batched-onnx-int8",
        "p50_ms": p50,
        "reference": "batched",
        "reference_p50_ms": reference_p50,
        "ratio": round(p50 / reference_p50, 3) if p50 and reference_p50 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per level")
    parser.add_argument("--levels", default="1,4,16,64", help="connections, comma-separated")
    parser.add_argument(
        "--platform-home",
        type=Path,
        default=Path(os.environ.get("PLATFORM_HOME", ROOT / ".platform")),
    )
    parser.add_argument("--requests", type=int, default=20_000, help="distinct payments")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    chosen = [CONTENDERS[c] for c in args.contenders.split(",")]
    home = args.platform_home.resolve()
    lake = home / "lake"
    bento_src = newest_bento(home / "bentoml")
    log(f"champion Bento: {bento_src.parent.name} ({home})")

    registry = discover()
    bundle = json.loads((bento_src / "bundle" / "bundle.json").read_text())
    deployment = registry.deployments[bundle["deployment"]]
    spec = registry.training_sets[registry.models[deployment.model].training_set]
    champion = next(m for m in bundle["models"] if m["arm"] == CHAMPION)
    bundles = variants(bento_src, registry)

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp, redis_server() as url:
        workdir = Path(tmp)
        newest = seed_store(url, lake, registry, spec)
        requests = request_rows(
            lake, deployment.request_fields, args.requests, newest + timedelta(seconds=1)
        )
        bodies = bodies_of(requests)
        store = RedisOnlineStore(url)
        rows = online_features(spec, store, requests, registry.views, registry.request_features)
        features = stored_features(registry, spec)
        log(f"anchor keys: {seed_anchor(url, rows, features)} written")
        manifest = anchor_manifest(
            workdir,
            url,
            bento_src / "bundle" / champion["folder"],
            champion["threshold"],
            rows,
            features,
        )

        for line in runtime_lines(bento_src / "bundle", champion["folder"], rows.head(1)):
            emit(line)
        context = build_context(workdir / "profile", bento_src, bundles["batched"])
        scoring = Scoring(
            deployment,
            spec,
            registry.sources[deployment.request_source],
            registry.views,
            registry.request_features,
            Bundle.read(context / "bundle").load(context / "bundle"),
        )
        for line in request_path_lines(scoring, store, url, requests):
            emit(line)
        store.close()

        serving = ServingTarget(
            bentoml_home=str(workdir / "bentoml"),
            state_dir=str(workdir / "state"),
            token=TOKEN,
            environment={
                "PLATFORM_HOME": str(workdir / "home"),
                "LAKEHOUSE_URI": str(workdir / "lake"),
                "ONLINE_STORE_URL": url,
            },
        )
        results: dict[str, list[Level]] = {}
        expected: list[float] | None = None
        drifts: dict[str, float] = {}
        later: list[dict[str, Any]] = []
        for contender in chosen:
            if contender == ANCHOR:
                with anchor_service(workdir, manifest) as anchor_url:
                    expected = probabilities(anchor_url, bodies)
                    log(f"{ANCHOR}: up at {anchor_url}")
                    results[ANCHOR] = run_levels(ANCHOR, anchor_url, bodies, levels, args.duration)
                continue
            begin = time.perf_counter()
            tag = serving.build(build_context(workdir / contender, bento_src, bundles[contender]))
            target = serving.target(replace(deployment, port=free_port()))
            release = serving.release(deployment.name, tag, champion["version"], 0.0)
            try:
                live = target.deploy(release)
                our_url = f"{live.url}/predict"
                log(f"{contender}: {tag} up at {our_url} ({time.perf_counter() - begin:.0f}s)")
                found = probabilities(our_url, bodies)
                if expected is not None:
                    drift = max(abs(a - b) for a, b in zip(found, expected, strict=True))
                    drifts[contender] = float(f"{drift:.3g}")
                    log(f"{contender}: largest difference from the anchor's scores {drift:.2e}")
                results[contender] = run_levels(contender, our_url, bodies, levels, args.duration)
                if any(level.errors for level in results[contender]):
                    log_failures(workdir / "state")
                if contender == "batched":
                    direct = f"http://127.0.0.1:{live.backend_port}/predict"
                    proxy = asyncio.run(drive(our_url, bodies, itertools.count(), 1, args.duration))
                    bare = asyncio.run(drive(direct, bodies, itertools.count(), 1, args.duration))
                    later.append(proxy_line(proxy, bare))
            finally:
                target.stop(deployment.name)

    anchor_levels = {level.connections: level for level in results.get(ANCHOR, [])}
    for contender, measured in results.items():
        for level in measured:
            reference = anchor_levels.get(level.connections)
            emit(level.line(contender, reference.rps if reference else None))
    for line in [*summary_lines(results, drifts), *later, int8_line(results)]:
        if line is not None:
            emit(line)


if __name__ == "__main__":
    main()
