"""The local target's process: a stable port in front of one model backend at a time.

A port cannot pass from one process to another without refusing connections for a moment, so
clients never talk to a backend: they talk to this reverse proxy, which stays up while backends
come and go on free loopback ports behind it. A deploy starts the new backend beside the old one,
waits for its readiness, switches the proxy's target (one assignment, between two requests), lets
the old backend finish what it is answering, and only then stops it. A backend that dies on its
own is started again with the same release.

Run as ``python -m serving.supervisor --state-dir DIR --name NAME --port PORT [--host HOST]`` by
``serving.deploy.LocalTarget``, which drives it over a unix socket: one JSON line per request
(``{"op": "deploy" | "status" | "stop", ...}``), one JSON line per answer.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from serving.deploy import (
    BACKEND_HOST,
    DRAIN_TIMEOUT_S,
    STOP_GRACE_S,
    Deployed,
    DeployError,
    Release,
    control_path,
    log_tail,
    write_json,
)

log = logging.getLogger("serving.supervisor")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers about one connection, not the request: each hop sets its own."""
REQUEST_DROP = HOP_BY_HOP | {"host"}
RESPONSE_DROP = HOP_BY_HOP | {"content-length"}
CONNECTIONS = 1024
"""Open connections to backends at most; above it requests queue in the proxy."""
KEEPALIVE_S = 2.0
"""Idle time after which the proxy drops a backend connection itself. Below uvicorn's 5 s, so a
backend never closes a connection just as the proxy sends a request on it (a failed request)."""
READY_POLL_S = 0.1
DRAIN_POLL_S = 0.01
RESTART_DELAY_S = 1.0
RESTART_DELAY_MAX_S = 30.0

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_supervisor() -> None:
    """Run in the backend between fork and exec: even a SIGKILLed supervisor takes its backends
    along, so none keeps a port and a model in memory with nothing in front of it."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((BACKEND_HOST, 0))
        return probe.getsockname()[1]


@dataclass(eq=False)
class Backend:
    """One running version; ``inflight`` counts the requests the proxy has sent it and not yet
    answered, which is what the switch waits on before stopping it."""

    release: Release
    process: asyncio.subprocess.Process
    port: int
    log: Path
    ready_timeout_s: float
    inflight: int = 0


class Supervisor:
    """One deployment: its stable port, the backend behind it, and the control socket. What
    serves is kept in memory and written to ``current.json`` at each switch, for other processes."""

    def __init__(self, directory: Path, host: str, port: int) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self.control = control_path(directory)
        self.backend: Backend | None = None
        self.deployed: Deployed | None = None
        self.backends: set[Backend] = set()
        self.watchers: set[asyncio.Task[None]] = set()
        self.lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.session: aiohttp.ClientSession

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS, keepalive_timeout=KEEPALIVE_S),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
            # The client's headers go through as they are; none of aiohttp's defaults join them.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        ) as self.session:
            runner = web.ServerRunner(
                web.Server(self.proxy, access_log=None), shutdown_timeout=STOP_GRACE_S
            )
            await runner.setup()
            # The stable port first: if another supervisor holds it, fail before taking its socket.
            await web.TCPSite(runner, self.host, self.port, backlog=1024).start()
            self.control.unlink(missing_ok=True)
            control = await asyncio.start_unix_server(self.answer, path=self.control)
            os.chmod(self.control, 0o600)  # a deploy message carries the backend's secrets
            write_json(
                self.directory / "supervisor.json",
                {
                    "pid": os.getpid(),
                    "control": str(self.control),
                    "host": self.host,
                    "port": self.port,
                },
            )
            log.info("supervising %s on %s:%d", self.directory.name, self.host, self.port)
            try:
                await self.stopping.wait()
            finally:
                control.close()
                await runner.cleanup()
                await asyncio.gather(*(self.terminate(b) for b in list(self.backends)))
                self.control.unlink(missing_ok=True)
                for state in ("current.json", "supervisor.json"):
                    (self.directory / state).unlink(missing_ok=True)
                log.info("stopped")

    async def proxy(self, request: web.BaseRequest) -> web.StreamResponse:
        backend = self.backend
        if backend is None:
            return web.Response(status=503, text="no model version is deployed here yet\n")
        backend.inflight += 1
        try:
            return await self.forward(request, backend.port)
        finally:
            backend.inflight -= 1

    async def forward(self, request: web.BaseRequest, port: int) -> web.StreamResponse:
        """Send ``request`` to the backend on ``port``. Bodies are read whole (up to aiohttp's
        1 MiB, a 413 above it): a request is a few payments, and a body sent with its length
        spares both hops chunked encoding."""
        body = await request.read() if request.body_exists else None
        try:
            async with self.session.request(
                request.method,
                URL(f"http://{BACKEND_HOST}:{port}{request.raw_path}", encoded=True),
                headers=[
                    (k, v) for k, v in request.headers.items() if k.lower() not in REQUEST_DROP
                ],
                data=body,
                allow_redirects=False,
            ) as upstream:
                return web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=[
                        (k, v)
                        for k, v in upstream.headers.items()
                        if k.lower() not in RESPONSE_DROP
                    ],
                    body=await upstream.read(),
                )
        except aiohttp.ClientError as error:
            return web.Response(status=502, text=f"the model backend did not answer: {error}\n")

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One control request. Every request gets an answer, a failed deploy its reason."""
        try:
            reply = await self.handle(json.loads(await reader.readline()))
        except Exception as error:
            # A version that does not get ready is an expected failure; anything else is a bug.
            log.error("request failed: %s", error, exc_info=not isinstance(error, DeployError))
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        with suppress(ConnectionError):
            await writer.drain()
            writer.close()
            await writer.wait_closed()

    async def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message["op"]
        if op == "status":
            return {"ok": True, "pid": os.getpid(), "host": self.host, "port": self.port}
        if op == "deploy":
            release = Release.from_dict(message["release"])
            deployed = await self.deploy(release, float(message["ready_timeout_s"]))
            return {"ok": True, "deployed": deployed.to_dict()}
        if op == "stop":
            self.stopping.set()  # the caller waits for this process to exit
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}")

    async def deploy(self, release: Release, ready_timeout_s: float) -> Deployed:
        async with self.lock:
            backend = await self.start(release, ready_timeout_s)
            old = self.backend
            self.switch(backend, self.deployed.model_version if self.deployed else None)
            if old is not None:
                await self.retire(old)
            assert self.deployed is not None
            return self.deployed

    async def start(self, release: Release, ready_timeout_s: float) -> Backend:
        """A backend for ``release``, ready; or a ``DeployError`` quoting its log."""
        if self.stopping.is_set():
            raise DeployError("the supervisor is stopping")
        port = free_port()
        number = 1
        while (self.directory / f"backend-{number}.log").exists():
            number += 1
        path = self.directory / f"backend-{number}.log"
        with path.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                *release.argv(port),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # A launcher: the backend inherits the supervisor's environment (S3 keys among
                # it) plus the release's settings; the service reads them through Settings.
                env={**os.environ, **release.environment},
                start_new_session=True,  # its own process group: stopping it reaches its workers
                preexec_fn=_die_with_supervisor,
            )
        backend = Backend(release, process, port, path, ready_timeout_s)
        self.backends.add(backend)
        log.info("started %s (pid %d, port %d)", release.model_version, process.pid, port)
        failure = await self.wait_ready(backend)
        if failure is not None:
            await self.terminate(backend)
            raise DeployError(f"{failure}; the end of {path}:\n{log_tail(path)}")
        log.info("%s is ready", release.model_version)
        watcher = asyncio.create_task(self.watch(backend))
        self.watchers.add(watcher)
        watcher.add_done_callback(self.watchers.discard)
        return backend

    async def wait_ready(self, backend: Backend) -> str | None:
        """None once the readiness path answers 200; otherwise why it never will."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + backend.ready_timeout_s
        url = f"http://{BACKEND_HOST}:{backend.port}{backend.release.readiness_path}"
        while True:
            if backend.process.returncode is not None:
                return f"the backend exited with code {backend.process.returncode} before ready"
            with suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as reply:
                    if reply.status == 200:
                        return None
            if loop.time() > deadline:
                return f"the backend was not ready within {backend.ready_timeout_s:g} s"
            await asyncio.sleep(READY_POLL_S)

    def switch(self, backend: Backend, previous_version: str | None) -> None:
        """Point the proxy at ``backend``: requests that arrive from now on go there."""
        self.backend = backend
        self.deployed = Deployed(
            name=backend.release.name,
            url=f"http://{self.host}:{self.port}",
            port=self.port,
            bento_tag=backend.release.bento_tag,
            model_version=backend.release.model_version,
            backend_pid=backend.process.pid,
            backend_port=backend.port,
            previous_version=previous_version,
            switched_at=datetime.now(UTC),
        )
        write_json(self.directory / "current.json", self.deployed.to_dict())
        log.info("switched to %s", backend.release.model_version)

    async def retire(self, old: Backend) -> None:
        """Stop ``old`` once it has answered what it was sent before the switch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while old.inflight and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        if old.inflight:
            log.warning("%d requests still open on the old backend; stopping it", old.inflight)
        await self.terminate(old)

    async def terminate(self, backend: Backend) -> None:
        """SIGTERM the backend's process group, SIGKILL what is left after the grace period."""
        pid = backend.process.pid
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        with suppress(TimeoutError):
            await asyncio.wait_for(backend.process.wait(), STOP_GRACE_S)
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the leader's stragglers, or the leader itself
        await backend.process.wait()
        self.backends.discard(backend)
        log.info("stopped %s (pid %d)", backend.release.model_version, pid)

    async def watch(self, backend: Backend) -> None:
        """Start the release again if its backend dies while it is the one serving."""
        code = await backend.process.wait()
        delay = RESTART_DELAY_S
        while backend is self.backend and not self.stopping.is_set():
            log.warning("%s exited with code %s; restarting", backend.release.model_version, code)
            async with self.lock:
                if backend is not self.backend:
                    return  # a deploy replaced it meanwhile
                try:
                    replacement = await self.start(backend.release, backend.ready_timeout_s)
                except DeployError as error:
                    log.error("restart failed: %s", error)
                else:
                    self.backends.discard(backend)
                    self.switch(
                        replacement, self.deployed.previous_version if self.deployed else None
                    )
                    return
            await asyncio.sleep(delay)
            delay = min(2 * delay, RESTART_DELAY_MAX_S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    directory = args.state_dir / args.name
    directory.mkdir(parents=True, exist_ok=True)
    asyncio.run(Supervisor(directory, args.host, args.port).run())


if __name__ == "__main__":
    main()
