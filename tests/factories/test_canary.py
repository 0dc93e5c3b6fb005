"""The canary ramp as the canary asset walks it: real supervisor, real releases, a small aiohttp
backend exporting the service's metrics in place of `bentoml serve` (a Bento would only make each
of the many releases slower; the service's own metrics are checked in test_deployments)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dagster as dg
import httpx
import pytest

from assets.deployments.fraud_api import FRAUD_API
from factories.deployments import canary_asset
from resources.serving import ServingTarget
from serving.routing import Traffic, challenger_share

BACKEND = """
import argparse, os
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from serving.routing import ERRORS_TOTAL, LATENCY_BUCKETS, LATENCY_SECONDS, PREDICTIONS_TOTAL, SHARE

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()
registry = CollectorRegistry()
answered = Counter(PREDICTIONS_TOTAL, "", ["arm", "decision"], registry=registry)
failed = Counter(ERRORS_TOTAL, "", ["arm"], registry=registry)
latency = Histogram(LATENCY_SECONDS, "", ["arm"], buckets=LATENCY_BUCKETS, registry=registry)
Gauge(SHARE, "", registry=registry).set(float(os.environ["CANARY_SHARE"]))
# The challenger's traffic since this release started, as the test's environment says.
errors = int(os.environ["CHALLENGER_ERRORS"])
answered.labels("challenger", "legitimate").inc(1000 - errors)
failed.labels("challenger").inc(errors)
for _ in range(1000 - errors):
    latency.labels("challenger").observe(float(os.environ["CHALLENGER_SECONDS"]))


async def readyz(request):
    return web.Response(status=200)


async def metrics(request):
    return web.Response(body=generate_latest(registry), content_type="text/plain")


app = web.Application()
app.router.add_get("/readyz", readyz)
app.router.add_get("/metrics", metrics)
web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, shutdown_timeout=1)
"""

CANARY = replace(FRAUD_API, traffic=Traffic("canary", max_error_rate=0.01, max_p99_ms=50.0))


class SmallBackend(ServingTarget):
    script: str

    def command(self, bento_tag: str) -> tuple[str, ...]:
        return (sys.executable, self.script, "--port", "{port}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[tuple[dg.AssetsDefinition, int, Path]]:
    script = tmp_path / "backend.py"
    script.write_text(BACKEND)
    deployment = replace(CANARY, port=free_port())
    yield canary_asset(deployment), deployment.port, script
    serving(script, tmp_path).target(deployment).stop(deployment.name)


def serving(script: Path, home: Path, errors: int = 0, seconds: float = 0.004) -> SmallBackend:
    return SmallBackend(
        bentoml_home=str(home / "bentoml"),
        state_dir=str(home / "serving"),
        token="token",
        environment={
            "CHALLENGER_ERRORS": str(errors),
            "CHALLENGER_SECONDS": str(seconds),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        script=str(script),
    )


def step(asset: dg.AssetsDefinition, target: ServingTarget) -> dict[str, object]:
    result = dg.materialize([asset], resources={"serving": target})
    [materialization] = result.asset_materializations_for_node("deployment__fraud_api_canary")
    return {k: v.value for k, v in materialization.metadata.items()}


def live_share(port: int) -> float:
    return challenger_share(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)


def start(target: ServingTarget, port: int, share: float) -> None:
    release = target.release(CANARY.name, "fraud_api:1", "1", share)
    target.target(replace(CANARY, port=port)).deploy(release)


def test_a_healthy_challenger_walks_the_whole_ramp(
    canary: tuple[dg.AssetsDefinition, int, Path], tmp_path: Path
) -> None:
    asset, port, script = canary
    target = serving(script, tmp_path)
    start(target, port, 0.05)
    walked = [step(asset, target) for _ in range(4)]
    assert [(s["action"], s["share"]) for s in walked] == [
        ("advance", 0.25),
        ("advance", 0.5),
        ("advance", 1.0),
        ("complete", 1.0),
    ]
    assert live_share(port) == 1.0


@pytest.mark.parametrize(("errors", "seconds", "why"), [(50, 0.004, "error rate"), (0, 0.2, "p99")])
def test_a_challenger_over_budget_is_rolled_back(
    canary: tuple[dg.AssetsDefinition, int, Path],
    tmp_path: Path,
    errors: int,
    seconds: float,
    why: str,
) -> None:
    asset, port, script = canary
    target = serving(script, tmp_path, errors=errors, seconds=seconds)
    start(target, port, 0.25)
    rolled = step(asset, target)
    assert (rolled["action"], rolled["share"], rolled["share_before"]) == ("rollback", 0.0, 0.25)
    assert why in str(rolled["reason"])
    assert live_share(port) == 0.0
