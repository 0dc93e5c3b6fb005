"""The local deploy target on loopback, with a small aiohttp app standing in for `bentoml serve`:
what is under test is the supervisor (readiness, the switch, the drain, stopping), and a real
Bento would only make each start take seconds longer."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.deploy import (
    DeployError,
    LocalTarget,
    Release,
    bentoml_command,
    control_path,
)

NAME = "fraud"

BACKEND = """
import argparse, asyncio, os, sys, time
from aiohttp import web

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--version", required=True)
parser.add_argument("--ready-after", type=float, default=0.0)
parser.add_argument("--fail", action="store_true")
args = parser.parse_args()
if args.fail:
    print("boom: this model does not load", flush=True)
    sys.exit(1)
ready_at = time.monotonic() + args.ready_after


async def readyz(request):
    return web.Response(status=200 if time.monotonic() >= ready_at else 503)


async def predict(request):
    if time.monotonic() < ready_at:
        return web.Response(status=503, text="not ready")
    body = await request.read()
    await asyncio.sleep(0.002)  # long enough that a switch finds requests in flight
    return web.json_response({
        "version": args.version,
        "pid": os.getpid(),
        "method": request.method,
        "path": request.path_qs,
        "authorization": request.headers.get("Authorization"),
        "body": body.decode(),
        "token": os.environ.get("SERVING_TOKEN"),
    })


app = web.Application()
app.router.add_get("/readyz", readyz)
app.router.add_route("*", "/predict", predict)
web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, shutdown_timeout=1)
"""


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = tmp_path_factory.mktemp("backend") / "backend.py"
    script.write_text(BACKEND)
    return script


def release(backend: Path, version: str, *options: str) -> Release:
    return Release(
        name=NAME,
        bento_tag=f"fraud:{version}",
        model_version=version,
        command=(sys.executable, str(backend), "--port", "{port}", "--version", version, *options),
        environment={"SERVING_TOKEN": "secret"},
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def supervisor_pid(target: LocalTarget) -> int:
    return json.loads((target.state_dir / NAME / "supervisor.json").read_text())["pid"]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LocalTarget]:
    local = LocalTarget(tmp_path / "state", port=free_port(), ready_timeout_s=10)
    yield local
    local.stop(NAME)


def test_deploy_waits_for_readiness_and_serves_on_the_stable_port(
    target: LocalTarget, backend: Path
) -> None:
    started = time.monotonic()
    deployed = target.deploy(release(backend, "v1", "--ready-after", "1.0"))

    assert time.monotonic() - started >= 1.0
    assert deployed.url == f"http://127.0.0.1:{target.port}"
    assert (deployed.model_version, deployed.previous_version) == ("v1", None)
    assert deployed.backend_port != target.port
    answer = httpx.post(f"{deployed.url}/predict").json()
    assert (answer["version"], answer["pid"], answer["token"]) == (
        "v1",
        deployed.backend_pid,
        "secret",
    )


def test_requests_pass_through_unchanged(target: LocalTarget, backend: Path) -> None:
    deployed = target.deploy(release(backend, "v1"))

    answer = httpx.put(
        f"{deployed.url}/predict?amount=12.5&currency=EUR",
        headers={"Authorization": "Bearer token-123"},
        content=b'{"customer": "c-1"}',
    ).json()

    assert answer["method"] == "PUT"
    assert answer["path"] == "/predict?amount=12.5&currency=EUR"
    assert answer["authorization"] == "Bearer token-123"
    assert answer["body"] == '{"customer": "c-1"}'


def test_a_version_switch_under_a_steady_request_loop_fails_no_request(
    target: LocalTarget, backend: Path
) -> None:
    old = target.deploy(release(backend, "v1"))
    supervisor = supervisor_pid(target)
    answers: list[list[str]] = [[], []]
    failures: list[str] = []
    done = threading.Event()

    def loop(versions: list[str]) -> None:
        with httpx.Client(base_url=old.url, timeout=10) as client:
            while not done.is_set():
                try:
                    reply = client.post("/predict", content=b'{"amount": 1}')
                    reply.raise_for_status()
                    versions.append(reply.json()["version"])
                except httpx.HTTPError as error:
                    failures.append(repr(error))

    threads = [threading.Thread(target=loop, args=(versions,)) for versions in answers]
    for thread in threads:
        thread.start()
    try:
        while min(len(versions) for versions in answers) < 20:
            time.sleep(0.01)
        new = target.deploy(release(backend, "v2", "--ready-after", "0.5"))
        switched = [len(versions) for versions in answers]
        while min(len(v) - n for v, n in zip(answers, switched, strict=True)) < 20:
            time.sleep(0.01)
    finally:
        done.set()
        for thread in threads:
            thread.join()

    assert failures == []
    for versions in answers:
        first_v2 = versions.index("v2")
        assert set(versions[:first_v2]) == {"v1"} and set(versions[first_v2:]) == {"v2"}
    assert (new.model_version, new.previous_version) == ("v2", "v1")
    assert not alive(old.backend_pid)
    assert supervisor_pid(target) == supervisor  # the running supervisor was reused


def test_a_version_that_never_gets_ready_leaves_the_old_one_serving(
    target: LocalTarget, backend: Path
) -> None:
    deployed = target.deploy(release(backend, "v1"))

    with pytest.raises(
        DeployError, match=r"(?s)exited with code 1.*boom: this model does not load"
    ):
        target.deploy(release(backend, "v2", "--fail"))

    assert httpx.post(f"{deployed.url}/predict").json()["version"] == "v1"
    assert target.current(NAME) == deployed


def test_current_is_read_back_by_another_target_even_with_a_deep_state_dir(
    tmp_path: Path, backend: Path
) -> None:
    deep = tmp_path / ("d" * 120)  # too long a path for a unix socket in it
    port = free_port()
    target = LocalTarget(deep, port=port, ready_timeout_s=10)
    try:
        assert target.current(NAME) is None
        deployed = target.deploy(release(backend, "v1"))

        assert LocalTarget(deep, port=port).current(NAME) == deployed
        assert not control_path(deep / NAME).is_relative_to(deep)
    finally:
        target.stop(NAME)


def test_stop_closes_the_port_and_ends_every_process(target: LocalTarget, backend: Path) -> None:
    deployed = target.deploy(release(backend, "v1"))
    supervisor = supervisor_pid(target)

    target.stop(NAME)

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{deployed.url}/predict")
    assert not alive(supervisor)
    assert wait_gone(deployed.backend_pid)
    assert target.current(NAME) is None
    target.stop(NAME)  # stopping what does not run is fine


def test_a_backend_that_dies_is_started_again(target: LocalTarget, backend: Path) -> None:
    deployed = target.deploy(release(backend, "v1"))

    os.kill(deployed.backend_pid, signal.SIGKILL)

    deadline = time.monotonic() + 15
    while (current := target.current(NAME)).backend_pid == deployed.backend_pid:
        assert time.monotonic() < deadline, "the backend was not restarted"
        time.sleep(0.05)
    answer = httpx.post(f"{deployed.url}/predict").json()
    assert (answer["version"], answer["pid"]) == ("v1", current.backend_pid)


def test_a_release_needs_a_port_placeholder() -> None:
    command = bentoml_command("fraud:abc", python="python")
    assert command[:5] == ("python", "-m", "bentoml", "serve", "fraud:abc")
    assert "{port}" in command

    with pytest.raises(ValueError, match="port"):
        Release(NAME, "fraud:abc", "3", command=("bentoml", "serve", "fraud:abc"))
