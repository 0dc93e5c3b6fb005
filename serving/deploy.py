"""Deploy targets: where a built Bento goes to serve, behind one stable URL.

A ``DeployTarget`` takes a ``Release`` (a Bento and the command that serves it) and answers with a
``Deployed``; the Dagster resource picks the target, so the deployment asset never knows whether a
local process or a Kubernetes rollout serves the model. ``LocalTarget`` runs one supervisor
(``serving.supervisor``) per deployment: a detached process that owns the stable port, starts each
new version beside the old one on a free port, waits for its readiness, switches traffic and only
then stops the old one, so no request fails during a switch. It outlives the run that deployed, and
any later process finds it again through the deployment's state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

PORT_PLACEHOLDER = "{port}"
"""Stands in a ``Release.command`` for the port the backend is given; it is only known at start."""
BACKEND_HOST = "127.0.0.1"
"""Backends listen on loopback only: the supervisor's stable port is the one way in."""
DRAIN_TIMEOUT_S = 30.0
"""Longest wait for the old version's in-flight requests after a switch before it is stopped."""
STOP_GRACE_S = 10.0
"""Between SIGTERM and SIGKILL for a backend, and for the proxy's open requests on shutdown."""
SUPERVISOR_START_S = 30.0
"""Longest wait for a new supervisor to answer on its control socket."""
SOCKET_PATH_MAX = 100
"""Bytes a unix socket path may take: Linux allows 107, macOS 103; a little margin below both."""
LOG_TAIL_BYTES = 4000
"""How much of a log's end an error message quotes."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""A deployment name is a directory name in the state directory, so nothing that walks paths."""


class DeployError(RuntimeError):
    """A version did not go live; whatever served before still serves."""


def bentoml_command(
    bento_tag: str,
    python: str = sys.executable,
    extra: tuple[str, ...] = (),
    host: str = BACKEND_HOST,
) -> tuple[str, ...]:
    """``bentoml serve`` through the given interpreter, so the backend runs in the same
    environment as the Bento was built in rather than whichever ``bentoml`` is first on PATH."""
    return (
        python,
        "-m",
        "bentoml",
        "serve",
        bento_tag,
        "--host",
        host,
        "--port",
        PORT_PLACEHOLDER,
        *extra,
    )


@dataclass(frozen=True)
class Release:
    """One model version to put live under the deployment ``name``.

    ``command`` is what a local target runs (``{port}`` in it becomes the backend's port);
    ``environment`` is added to the backend's environment (``BENTOML_HOME``, the serving token)
    and, since it may hold secrets, is never written to disk.
    """

    name: str
    bento_tag: str
    model_version: str
    command: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    readiness_path: str = "/readyz"

    def __post_init__(self) -> None:
        if not any(PORT_PLACEHOLDER in part for part in self.command):
            raise ValueError(f"the command of {self.name!r} has no {PORT_PLACEHOLDER} to fill")
        if not self.readiness_path.startswith("/"):
            raise ValueError(f"readiness path must start with '/', got {self.readiness_path!r}")

    def argv(self, port: int) -> tuple[str, ...]:
        return tuple(part.replace(PORT_PLACEHOLDER, str(port)) for part in self.command)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "command": list(self.command), "environment": {**self.environment}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Release:
        return cls(**{**data, "command": tuple(data["command"])})


@dataclass(frozen=True)
class Deployed:
    """What serves under ``name`` now: clients use ``url``; the backend behind it may change."""

    name: str
    url: str
    port: int
    bento_tag: str
    model_version: str
    backend_pid: int
    backend_port: int
    previous_version: str | None
    switched_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "switched_at": self.switched_at.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployed:
        return cls(**{**data, "switched_at": datetime.fromisoformat(data["switched_at"])})


class DeployTarget(ABC):
    """Where releases go live. Each call stands alone: a target keeps its state where it serves
    (a state directory, a cluster), so another process, or a later run, sees the same thing."""

    @abstractmethod
    def deploy(self, release: Release) -> Deployed:
        """Put ``release`` live under its name, replacing what served before without failing a
        request; if it does not get ready, raise ``DeployError``, the old version still serving."""

    @abstractmethod
    def current(self, name: str) -> Deployed | None:
        """What serves under ``name``, or None when nothing does."""

    @abstractmethod
    def stop(self, name: str) -> None:
        """Take ``name`` offline; stopping what does not run is not an error."""


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The end of a log, where a failed start says why."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - limit))
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"


def control_path(directory: Path) -> Path:
    """The supervisor's control socket: in its directory unless that path is too long for a unix
    socket, then in the temp directory under a name derived from the directory (so it is stable)."""
    path = directory / "control.sock"
    if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(directory.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mlops-serving-{digest}.sock"


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` whole, so a reader never sees half a file."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(data, indent=2))
    os.replace(staging, path)


def ask(control: Path, message: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
    """One request on a supervisor's control socket, one JSON line each way."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout_s)
        connection.connect(os.fspath(control))
        connection.sendall(json.dumps(message).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = connection.recv(65536)
            if not chunk:
                raise ConnectionError(f"the supervisor at {control} hung up without an answer")
            answer += chunk
    return json.loads(answer)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs. An exited child of this process is reaped here, whichever object
    started it, and a zombie nobody reaps (a container whose init does not) counts as exited."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the pid now belongs to another
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


class LocalTarget(DeployTarget):
    """``bentoml serve`` on this machine behind ``host:port``, one supervisor per deployment.

    Each deployment keeps ``state_dir/<name>/``: the supervisor's log and ``supervisor.json``
    (pid, control socket, port), the backends' logs, and ``current.json`` (the ``Deployed``).
    One port serves one deployment, so two deployments need two targets.
    """

    def __init__(
        self, state_dir: Path, port: int, host: str = "127.0.0.1", ready_timeout_s: float = 120.0
    ) -> None:
        self.state_dir = Path(state_dir)
        self.port = port
        self.host = host
        self.ready_timeout_s = ready_timeout_s
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def deploy(self, release: Release) -> Deployed:
        control = self._supervisor(release.name)
        answer = ask(
            control,
            {"op": "deploy", "release": release.to_dict(), "ready_timeout_s": self.ready_timeout_s},
            timeout_s=self.ready_timeout_s + DRAIN_TIMEOUT_S + 2 * STOP_GRACE_S + 30,
        )
        if not answer["ok"]:
            raise DeployError(f"{release.name} {release.model_version}: {answer['error']}")
        return Deployed.from_dict(answer["deployed"])

    def current(self, name: str) -> Deployed | None:
        state = self._directory(name) / "current.json"
        if self._running(name) is None or not state.exists():
            return None
        return Deployed.from_dict(json.loads(state.read_text()))

    def stop(self, name: str) -> None:
        directory = self._directory(name)
        info = self._running(name)
        if info is not None:
            ask(Path(info["control"]), {"op": "stop"}, timeout_s=STOP_GRACE_S)
            self._wait_exit(info["pid"], timeout_s=3 * STOP_GRACE_S)
        (directory / "current.json").unlink(missing_ok=True)

    def _directory(self, name: str) -> Path:
        if not NAME.fullmatch(name):
            raise ValueError(
                f"a deployment name is letters, digits, '_', '.' and '-'; got {name!r}"
            )
        return self.state_dir / name

    def _running(self, name: str) -> dict[str, Any] | None:
        """The supervisor's record when it runs and answers; a dead pid or a silent socket is a
        supervisor that is gone, whatever its files say."""
        try:
            info = json.loads((self._directory(name) / "supervisor.json").read_text())
        except FileNotFoundError:
            return None
        if not _alive(info["pid"]):
            return None
        try:
            status = ask(Path(info["control"]), {"op": "status"}, timeout_s=5)
        except (OSError, ValueError):
            return None
        return info if status.get("pid") == info["pid"] else None

    def _supervisor(self, name: str) -> Path:
        """The control socket of the deployment's supervisor, started if none runs."""
        directory = self._directory(name)
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory / "supervisor.lock"):
            info = self._running(name)
            if info is not None:
                if (info["host"], info["port"]) != (self.host, self.port):
                    raise DeployError(
                        f"{name} is served on {info['host']}:{info['port']}, not "
                        f"{self.host}:{self.port}; stop it first to move it"
                    )
                return Path(info["control"])
            return self._start_supervisor(name, directory)

    def _start_supervisor(self, name: str, directory: Path) -> Path:
        # A launcher: the supervisor inherits this environment, with the project importable.
        package_root = str(Path(__file__).resolve().parent.parent)
        python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        log = directory / "supervisor.log"
        with log.open("ab") as output:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "serving.supervisor",
                    "--state-dir",
                    str(self.state_dir),
                    "--name",
                    name,
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": python_path},
                start_new_session=True,  # neither a Ctrl-C nor the deploying run's end may reach it
            )
        self._children[child.pid] = child
        deadline = time.monotonic() + SUPERVISOR_START_S
        while (info := self._running(name)) is None or info["pid"] != child.pid:
            if child.poll() is not None:
                raise DeployError(f"the supervisor of {name} exited:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                child.kill()
                child.wait()
                raise DeployError(f"the supervisor of {name} did not answer:\n{log_tail(log)}")
            time.sleep(0.05)
        return Path(info["control"])

    def _wait_exit(self, pid: int, timeout_s: float) -> None:
        """Wait for a supervisor to exit; one this object started is reaped, or its pid would
        linger as a zombie and look alive."""
        if (child := self._children.pop(pid, None)) is not None:
            try:
                child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                child.wait()
            return
        deadline = time.monotonic() + timeout_s
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two processes deploying the same name at once must not both start a supervisor."""
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> None:
    """``python -m serving.deploy stop --state-dir DIR``: stop every local service under DIR."""
    parser = argparse.ArgumentParser(description="Stop the local model services.")
    parser.add_argument("command", choices=["stop"])
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    names = (
        [p.name for p in args.state_dir.iterdir() if p.is_dir()] if args.state_dir.is_dir() else []
    )
    target = LocalTarget(args.state_dir, port=0)
    for name in sorted(names):
        running = target.current(name)
        target.stop(name)
        if running is not None:
            print(f"stopped {name} ({running.url}, model version {running.model_version})")


if __name__ == "__main__":
    main()
