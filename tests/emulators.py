"""Google's official Pub/Sub and Firestore emulators as test fixtures.

Resolution order for each emulator:

1. ``PUBSUB_EMULATOR_HOST`` / ``FIRESTORE_EMULATOR_HOST`` already set: use that server as is (it cannot be
   stopped or restarted by tests; tests that need that skip).
2. The emulator binaries of a local Google Cloud CLI (``/usr/lib/google-cloud-sdk`` or wherever
   ``gcloud info`` says the SDK lives): started as a process group on a free loopback port.
3. Docker through testcontainers with Google's ``google-cloud-cli:emulators`` image.
4. Otherwise the test is skipped with the reason, except on CI (``CI=true``) where it fails: a CI run
   that silently skipped every emulator test would prove nothing.

Both emulators are shell scripts that start Java, and the Firestore one does not ``exec`` it, so each is
started in its own session and stopped with ``killpg`` (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DEFAULT_SDK_ROOT = Path("/usr/lib/google-cloud-sdk")
PUBSUB_RELATIVE = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
FIRESTORE_RELATIVE = Path("platform/cloud-firestore-emulator/cloud_firestore_emulator")
EMULATOR_IMAGE = "gcr.io/google.com/cloudsdktool/google-cloud-cli:emulators"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


# Runs as the leader of the emulator's process group: starts the emulator and, should the test process die
# without stopping it (SIGKILL, a CI timeout), takes the whole group down instead of leaving Java behind.
_WATCHDOG = """
import os, signal, subprocess, sys, time
parent = int(sys.argv[1])
child = subprocess.Popen(sys.argv[2:])
while child.poll() is None and os.getppid() == parent:
    time.sleep(0.5)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.killpg(0, signal.SIGTERM)
deadline = time.monotonic() + 10
while child.poll() is None and time.monotonic() < deadline:
    time.sleep(0.1)
os.killpg(0, signal.SIGKILL)
"""


class EmulatorUnavailable(Exception):
    """No way to run this emulator here; the message says what was tried."""


class EmulatorStartFailed(RuntimeError):
    """The emulator is installed but did not come up: an error to show, never a reason to skip."""


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Skip locally, fail on CI: a missing emulator must never turn a CI run green by skipping."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true: emulator tests may not be skipped)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(host: str, port: int, timeout: float = 2.0) -> bool:
    """Both emulators answer ``GET /`` with 200 "Ok" once they serve requests (not merely listen)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# --- emulator handles -------------------------------------------------------------------------------------


class Emulator:
    """A running emulator; ``host`` is what goes into ``*_EMULATOR_HOST``."""

    name: str
    can_restart: bool = False

    @property
    def host(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release it at the end of the session."""


@dataclass
class ExternalEmulator(Emulator):
    """An emulator somebody else runs (``*_EMULATOR_HOST`` was set): used, never stopped."""

    name: str
    address: str
    can_restart: bool = False

    @property
    def host(self) -> str:
        return self.address

    def stop(self) -> None:
        pytest.skip(f"{self.name} emulator at {self.address} is external; it cannot be stopped by tests")

    def restart(self) -> None:
        pytest.skip(f"{self.name} emulator at {self.address} is external; it cannot be restarted by tests")


@dataclass
class EmulatorProcess(Emulator):
    """An emulator started from local binaries, in its own process group, on a fixed loopback port.

    ``stop()`` then ``restart()`` brings it back on the *same* port so clients that keep their
    ``*_EMULATOR_HOST`` reconnect; the emulators keep state in memory, so a restart loses every topic,
    subscription and document.
    """

    name: str
    command_for_port: Callable[[int], list[str]]
    log_dir: Path
    port: int = field(default_factory=free_port)
    ready_timeout: float = READY_TIMEOUT
    can_restart: bool = True
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _starts: int = field(default=0, init=False, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self._starts}.log"

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running():
            return
        if port_open("127.0.0.1", self.port, timeout=0.2):
            self._wait_port_released()
        self._starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(os.getpid()), *self.command_for_port(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise EmulatorStartFailed(
                    f"{self.name} emulator exited with {self._process.returncode} before it was ready; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if port_open("127.0.0.1", self.port) and http_ok("127.0.0.1", self.port):
                return
            time.sleep(0.1)
        raise EmulatorStartFailed(
            f"{self.name} emulator not ready on {self.host} after {self.ready_timeout:.0f} s; "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _wait_port_released(self, timeout: float = STOP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not port_open("127.0.0.1", self.port, timeout=0.2):
                return
            time.sleep(0.1)
        raise EmulatorStartFailed(f"port {self.port} for the {self.name} emulator is still taken")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        pgid = process.pid  # start_new_session=True: the child leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
        # The script may be gone while Java (same group) lives on; make sure the whole group is gone.
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.1)
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)
        self._wait_port_released()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ContainerEmulator(Emulator):
    """An emulator in Docker (testcontainers), published on a fixed host port so restarts keep it."""

    name: str
    container_command: str
    container_port: int
    port: int = field(default_factory=free_port)
    can_restart: bool = True
    _container: object | None = field(default=None, init=False, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        from testcontainers.core.container import DockerContainer

        container = (
            DockerContainer(EMULATOR_IMAGE)
            .with_command(self.container_command)
            .with_bind_ports(self.container_port, self.port)
        )
        container.start()
        self._container = container
        deadline = time.monotonic() + READY_TIMEOUT * 3  # first run may pull the image
        while time.monotonic() < deadline:
            if port_open("127.0.0.1", self.port) and http_ok("127.0.0.1", self.port):
                return
            time.sleep(0.2)
        logs = container.get_logs()
        self.stop()
        raise EmulatorStartFailed(
            f"{self.name} emulator container not ready on {self.host}: {logs!r}"[-4000:]
        )

    def running(self) -> bool:
        return self._container is not None

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.stop()  # type: ignore[attr-defined]

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()


# --- resolution -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatorSpec:
    name: str
    env_var: str
    relative_path: Path
    container_command: str
    container_port: int

    def local_command(self, binary: Path) -> Callable[[int], list[str]]:
        if self.name == "firestore":
            return lambda port: [str(binary), "start", "--host=127.0.0.1", f"--port={port}"]
        return lambda port: [str(binary), "--host=127.0.0.1", f"--port={port}"]


PUBSUB = EmulatorSpec(
    name="pubsub",
    env_var="PUBSUB_EMULATOR_HOST",
    relative_path=PUBSUB_RELATIVE,
    container_command="gcloud beta emulators pubsub start --host-port=0.0.0.0:8085",
    container_port=8085,
)
FIRESTORE = EmulatorSpec(
    name="firestore",
    env_var="FIRESTORE_EMULATOR_HOST",
    relative_path=FIRESTORE_RELATIVE,
    container_command="gcloud emulators firestore start --host-port=0.0.0.0:8080",
    container_port=8080,
)


def gcloud_sdk_root() -> Path | None:
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return None
    try:
        found = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(found) if found else None


def local_binary(spec: EmulatorSpec) -> tuple[Path | None, list[Path]]:
    """The emulator script of a local Google Cloud CLI, and the SDK roots that were searched."""
    searched = [DEFAULT_SDK_ROOT]
    candidate = DEFAULT_SDK_ROOT / spec.relative_path
    if not candidate.is_file():
        root = gcloud_sdk_root()
        if root is not None and root != DEFAULT_SDK_ROOT:
            searched.append(root)
            candidate = root / spec.relative_path
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate, searched
    return None, searched


def docker_available() -> bool:
    try:
        import docker  # testcontainers depends on it
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:
        return False
    return True


def start_emulator(spec: EmulatorSpec, log_dir: Path) -> Emulator:
    """Start (or adopt) the emulator of ``spec``; raises ``EmulatorUnavailable`` naming what was tried."""
    external = os.environ.get(spec.env_var, "").strip()
    if external:
        return ExternalEmulator(name=spec.name, address=external)
    tried: list[str] = []
    binary, searched = local_binary(spec)
    if binary is not None:
        if shutil.which("java") is None and not os.environ.get("JAVA"):
            tried.append(f"{binary} found but no java on PATH")
        else:
            process = EmulatorProcess(
                name=spec.name, command_for_port=spec.local_command(binary), log_dir=log_dir
            )
            process.start()  # a broken local install is an error to show, not a reason to skip
            return process
    else:
        tried.append(f"no {spec.relative_path} under {', '.join(str(r) for r in searched)}")
    if docker_available():
        container = ContainerEmulator(
            name=spec.name, container_command=spec.container_command, container_port=spec.container_port
        )
        container.start()
        return container
    tried.append("no reachable Docker daemon for testcontainers")
    component = "pubsub-emulator" if spec.name == "pubsub" else "cloud-firestore-emulator"
    raise EmulatorUnavailable(
        f"{spec.name} emulator unavailable ({'; '.join(tried)}); set {spec.env_var}, install it with "
        f"`gcloud components install {component}` or start Docker"
    )


class LazyEmulator:
    """Starts the emulator the first time a test asks for it and remembers a failure for the session."""

    def __init__(self, spec: EmulatorSpec, log_dir: Path) -> None:
        self.spec = spec
        self.log_dir = log_dir
        self._emulator: Emulator | None = None
        self._error: str | None = None
        self._failure: str | None = None

    def get(self) -> Emulator:
        if self._emulator is None and self._error is None and self._failure is None:
            try:
                self._emulator = start_emulator(self.spec, self.log_dir)
            except EmulatorUnavailable as error:
                self._error = str(error)
            except EmulatorStartFailed as error:
                self._failure = str(error)
        if self._failure is not None:
            pytest.fail(self._failure, pytrace=False)
        if self._error is not None:
            skip_or_fail(self._error)
        assert self._emulator is not None
        return self._emulator

    def close(self) -> None:
        if self._emulator is not None:
            self._emulator.close()
            self._emulator = None
