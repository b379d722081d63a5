"""``make run``: the whole pipeline on this machine, on the embedded backend, in the foreground.

Starts every service process, prefixes their output with the process name, and stops them all when the
stack ends, however it ends:

* Ctrl-C, SIGTERM, SIGHUP (the terminal was closed) or SIGQUIT: SIGTERM to each child's process group,
  SIGKILL after a grace period;
* the stack itself killed (even with SIGKILL): every child has a parent-death signal (Linux
  ``PR_SET_PDEATHSIG``), so it gets SIGTERM from the kernel; and the stack has one towards ``make``, so
  the death of ``make`` ends it too. Nothing is left running under PID 1.

A *service* that exits stops the stack (something is wrong). A *fake* (the TalentLMS fake) may come and go:
``make fake-lms-down`` stops it and keeps it down, to watch CourseBridge retry and catch up;
``make fake-lms-up`` brings it back; if it exits by itself it is restarted.

Without HOTMART_HOTTOK / ADMIN_TOKEN / ANALYTICS_PSEUDONYM_KEY it generates development values once, keeps
them in the data directory and prints them; a value that came from the environment is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 30
FAKE_TALENTLMS_PORT = "8090"
FAKE_TALENTLMS_API_KEY = "local-fake-talentlms-key"
FAKE_HOTMART_PORT = "8091"
FAKE_HOTMART_CLIENT_ID = "local-fake-hotmart-client"
FAKE_HOTMART_CLIENT_SECRET = "local-fake-hotmart-secret"  # noqa: S105 - the local fake's credential
SERVICES = (
    ("ingest", "INGEST_PORT", "8080"),
    ("enrollment", "ENROLLMENT_PORT", "8081"),
    ("subscription", "SUBSCRIPTION_PORT", "8082"),
    ("analytics", "ANALYTICS_PORT", "8083"),
    ("console", "CONSOLE_PORT", "8084"),  # the operator console: owns no data, calls the four APIs
)


FAKE_RESTART_SECONDS = 1.0
SECRET_NAMES = ("HOTMART_HOTTOK", "ADMIN_TOKEN", "ANALYTICS_PSEUDONYM_KEY", "LOOKUP_HASH_KEY")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    restartable: bool = False  # a fake: it may stop (on purpose or not) without stopping the stack


class ConfigurationError(Exception):
    """The environment asks for something the local stack cannot run; the message says what to set."""


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; elsewhere a no-op).

    Kept across ``exec``, so a child started through ``--child`` keeps it in the service it becomes.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def child_argv(argv: list[str]) -> list[str]:
    """``argv`` run through this file's ``--child`` shim: parent-death signal set, then ``exec``."""
    return [sys.executable, str(Path(__file__).resolve()), "--child", str(os.getpid()), "--", *argv]


def exec_child(parent: int, argv: list[str]) -> None:
    die_with_parent()
    if os.getppid() != parent:  # the stack died before the signal was armed
        sys.exit(1)
    os.execvp(argv[0], argv)  # noqa: S606 - the service's own argv, no shell involved


def talentlms_settings(environ: dict[str, str]) -> dict[str, str]:
    """The TalentLMS variables for the services: the local fake unless a real account is configured."""
    base_url = environ.get("TALENTLMS_BASE_URL", "").strip()
    if base_url:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"TALENTLMS_BASE_URL must be an http(s) URL such as https://acme.talentlms.com/api/v1, "
                f"got {base_url[:80]!r}"
            )
        if not environ.get("TALENTLMS_API_KEY", "").strip():
            raise ConfigurationError(
                "TALENTLMS_BASE_URL is set but TALENTLMS_API_KEY is not: set both to use a real TalentLMS "
                "account, or neither to use the local fake"
            )
        return {"TALENTLMS_BASE_URL": base_url, "TALENTLMS_API_KEY": environ["TALENTLMS_API_KEY"]}
    port = environ.get("TALENTLMS_FAKE_PORT") or FAKE_TALENTLMS_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"TALENTLMS_FAKE_PORT must be a TCP port number, got {port[:20]!r}")
    return {
        "TALENTLMS_FAKE_PORT": port,
        "TALENTLMS_BASE_URL": f"http://127.0.0.1:{port}/api/v1",
        "TALENTLMS_API_KEY": environ.get("TALENTLMS_API_KEY") or FAKE_TALENTLMS_API_KEY,
        # Enrolled users of the fake sign in and complete courses by themselves, and enrollment reads the
        # timeline every 90 s (2 calls a poll, within its 5 % share of 2,000 an hour), so the Learning
        # dashboard of a fresh `make run` fills up (0 turns either off).
        "TALENTLMS_FAKE_SIMULATE_LEARNERS": environ.get("TALENTLMS_FAKE_SIMULATE_LEARNERS") or "1",
        "ENROLLMENT_LEARNING_INTERVAL_SECONDS": environ.get("ENROLLMENT_LEARNING_INTERVAL_SECONDS") or "90",
    }


def dev_secrets(data_dir: Path) -> tuple[dict[str, str], set[str]]:
    """Secrets from the environment, else development values generated once and kept in the data dir.

    Returns the values and the names whose value the stack generated (the only ones it may print).
    """
    path = data_dir / "dev-secrets.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key and value:
                stored[key] = value
    values = {}
    for name in SECRET_NAMES:
        values[name] = (
            os.environ.get(name) or stored.get(name) or f"dev-{name.lower()}-{secrets.token_hex(8)}"
        )
    generated = {k: v for k, v in values.items() if not os.environ.get(k)}  # never write a real secret
    if generated != stored:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in generated.items()))
        path.chmod(0o600)
    return values, set(generated)


def shown(name: str, values: dict[str, str], generated: set[str]) -> str:
    return values[name] if name in generated else "(from your environment, not shown)"


def control_dir(data_dir: Path) -> Path:
    return data_dir / "control"


def down_flag(data_dir: Path, name: str) -> Path:
    """While this file exists the stack keeps the fake ``name`` stopped."""
    return control_dir(data_dir) / f"{name}.down"


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def process_specs(env: dict[str, str]) -> list[ProcessSpec]:
    """Every process of the local stack; a service whose entry points do not exist yet is skipped."""
    python = sys.executable
    gunicorn = [python, "-m", "gunicorn", "-c", "python:coursebridge.runtime.gunicorn_conf"]
    specs: list[ProcessSpec] = []
    if env.get("TALENTLMS_FAKE_PORT") and _available("talentlms_fake.__main__"):
        specs.append(ProcessSpec("fake-talentlms", [python, "-m", "talentlms_fake"], {}, restartable=True))
    if env.get("HOTMART_FAKE_PORT") and _available("hotmart_fake.__main__"):
        specs.append(ProcessSpec("fake-hotmart", [python, "-m", "hotmart_fake"], {}, restartable=True))
    for service, port_variable, default_port in SERVICES:
        port = env.get(port_variable, default_port)
        if _available(f"{service}.entrypoints.api"):
            metrics_dir = Path(env["COURSEBRIDGE_DATA_DIR"]) / "metrics" / service
            shutil.rmtree(metrics_dir, ignore_errors=True)  # multi-process metrics start empty
            metrics_dir.mkdir(parents=True)
            specs.append(
                ProcessSpec(
                    f"{service}-api",
                    [*gunicorn, f"{service}.entrypoints.api:create_app()"],
                    {"PORT": port, "HOST": "127.0.0.1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                )
            )
        if _available(f"{service}.entrypoints.worker"):
            specs.append(
                ProcessSpec(f"{service}-worker", [python, "-m", f"{service}.entrypoints.worker"], {})
            )
    # The relay worker also reconciles with Hotmart's API (a lease keeps it to one replica).
    specs.append(
        ProcessSpec(
            "ingest-relay", [python, "-m", "ingest.entrypoints.relay"], {"HOTMART_RECONCILE_LOOP": "1"}
        )
    )
    return specs


def map_demo_products(env: dict[str, str], stopping: threading.Event) -> None:
    """With the fake TalentLMS, map the sample products to its demo courses once, so `make samples`
    shows enrollments right away. Existing mappings are left alone."""
    import requests

    from talentlms_fake import DEMO_MAPPINGS

    base = f"http://127.0.0.1:{env.get('ENROLLMENT_PORT', '8081')}"
    headers = {"Authorization": f"Bearer {env['ADMIN_TOKEN']}"}
    deadline = time.monotonic() + 60
    while not stopping.is_set() and time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        stopping.wait(0.5)
    else:
        return
    for product_id, mapping in DEMO_MAPPINGS.items():
        url = f"{base}/admin/products/{product_id}"
        try:
            if requests.get(url, headers=headers, timeout=5).status_code != 404:
                continue
            # 503 until the worker has read TalentLMS's course list (mappings are checked against it).
            while not stopping.is_set() and time.monotonic() < deadline + 60:
                response = requests.put(url, json=mapping, headers=headers, timeout=5)
                if response.status_code != 503:
                    response.raise_for_status()
                    print(f"mapped demo product {product_id} -> courses {mapping['course_ids']}", flush=True)
                    break
                stopping.wait(0.5)
        except requests.RequestException as error:
            print(f"could not map demo product {product_id}: {error}", flush=True)


def provision(env: dict[str, str]) -> None:
    """Create the embedded bus's topics and subscriptions before anything publishes."""
    subprocess.run(
        [sys.executable, "-c", "from coursebridge.tools import provision_main; provision_main()"],
        env=env,
        check=True,
    )


def _pump(name: str, stream, lock: threading.Lock) -> None:
    for line in iter(stream.readline, b""):
        with lock:
            sys.stdout.write(f"{name:>14} | {line.decode('utf-8', 'replace')}")
            sys.stdout.flush()


class Child:
    """One process of the stack, started through the parent-death shim in its own process group."""

    def __init__(self, spec: ProcessSpec, env: dict[str, str], lock: threading.Lock) -> None:
        self.spec = spec
        self._env = {**env, **spec.env}
        self._lock = lock
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            child_argv(self.spec.argv),
            env=self._env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own signal handling decides when children stop
        )
        threading.Thread(
            target=_pump, args=(self.spec.name, self.process.stdout, self._lock), daemon=True
        ).start()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        """To the whole process group (gunicorn's workers too), even after its leader exited."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


def stop_children(children: list[Child]) -> None:
    print("\nstopping: SIGTERM to every process ...", flush=True)
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for child in children:
        if not child.wait(max(0.1, deadline - time.monotonic())):
            print(f"{child.spec.name} did not stop in {GRACE_SECONDS}s: SIGKILL", flush=True)
            child.signal(signal.SIGKILL)
            child.wait(GRACE_SECONDS)


def supervise(children: list[Child], data_dir: Path, stopping: threading.Event) -> int:
    """Watch the children until ``stopping``: a service that exits ends the stack, a fake is restarted
    unless its down flag is set (``make fake-lms-down``). Returns the exit code."""
    parent = os.getppid()
    restart_at: dict[str, float] = {}
    announced_down: set[str] = set()
    while not stopping.wait(0.5):
        if os.getppid() != parent:  # make (or whoever started us) is gone
            print("\nthe command that started the stack is gone; stopping", flush=True)
            return 1
        for child in children:
            name = child.spec.name
            if not child.spec.restartable:
                if not child.running():
                    code = child.process.returncode if child.process else None
                    print(f"\n{name} exited with {code}; stopping the stack", flush=True)
                    return 1
                continue
            if down_flag(data_dir, name).exists():
                if name not in announced_down:
                    print(f"\n{name} is down on request (`make fake-lms-up` brings it back)", flush=True)
                    announced_down.add(name)
                    child.signal(signal.SIGTERM)
                continue
            if child.running():
                continue
            if name in announced_down:
                announced_down.discard(name)
                restart_at[name] = 0.0
            elif name not in restart_at:
                code = child.process.returncode if child.process else None
                print(f"\n{name} exited with {code}; restarting it", flush=True)
                restart_at[name] = time.monotonic() + FAKE_RESTART_SECONDS
            if time.monotonic() >= restart_at[name]:
                del restart_at[name]
                child.start()
                print(f"{name} started again", flush=True)
    return 0


def hotmart_settings(environ: dict[str, str]) -> dict[str, str]:
    """Hotmart's API for reconciliation and backfill: the local fake unless real credentials are set."""
    if environ.get("HOTMART_CLIENT_ID", "").strip():
        return {}
    port = environ.get("HOTMART_FAKE_PORT") or FAKE_HOTMART_PORT
    return {
        "HOTMART_FAKE_PORT": port,
        "HOTMART_CLIENT_ID": FAKE_HOTMART_CLIENT_ID,
        "HOTMART_CLIENT_SECRET": FAKE_HOTMART_CLIENT_SECRET,
        "HOTMART_API_BASE_URL": f"http://127.0.0.1:{port}",
        "HOTMART_AUTH_URL": f"http://127.0.0.1:{port}/security/oauth/token",
    }


def local_env() -> tuple[dict[str, str], dict[str, str], set[str]]:
    """The environment every local process gets (``make run``, ``make backfill``), the development
    secrets and which of them were generated here. ``ConfigurationError`` for an unusable setting."""
    data_dir = Path(os.environ.get("COURSEBRIDGE_DATA_DIR", ".data")).resolve()
    talentlms = talentlms_settings(dict(os.environ))
    env = {**os.environ, "COURSEBRIDGE_BACKEND": "embedded", "COURSEBRIDGE_DATA_DIR": str(data_dir)}
    env.pop("TALENTLMS_FAKE_PORT", None)
    env.pop("HOTMART_FAKE_PORT", None)
    env.update(talentlms)
    env.update(hotmart_settings(dict(os.environ)))
    env.setdefault("PYTHONUNBUFFERED", "1")
    values, generated = dev_secrets(data_dir)
    env.update(values)
    env.setdefault("SUBSCRIPTION_SWEEP_INTERVAL_SECONDS", "30")
    env.setdefault("ENROLLMENT_URL", f"http://127.0.0.1:{env.get('ENROLLMENT_PORT', '8081')}")
    return env, values, generated


def backfill(argv: list[str]) -> int:
    """``make backfill ARGS=...``: the backfill CLI with the local stack's environment."""
    try:
        env, _values, _generated = local_env()
    except ConfigurationError as error:
        print(f"make backfill: {error}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "ingest.entrypoints.backfill", *argv]
    return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode


def run_stack() -> int:
    # Whoever started us (make) dying ends the stack like a Ctrl-C would.
    die_with_parent(signal.SIGTERM)
    try:
        env, values, generated = local_env()
    except ConfigurationError as error:
        print(f"make run: {error}", file=sys.stderr)
        return 2
    data_dir = Path(env["COURSEBRIDGE_DATA_DIR"])
    control_dir(data_dir).mkdir(parents=True, exist_ok=True)
    for stale in control_dir(data_dir).glob("*.down"):
        stale.unlink()  # a new stack starts with every fake up
    provision(env)

    specs = process_specs(env)
    urls = {
        f"{service} API": f"http://127.0.0.1:{env.get(variable, port)}"
        for service, variable, port in SERVICES
        if any(spec.name == f"{service}-api" for spec in specs)
    }
    fake = any(spec.name == "fake-talentlms" for spec in specs)
    print(
        "\nCourseBridge local stack (embedded backend)\n"
        f"  data directory   {data_dir}\n"
        + "".join(f"  {name:<16} {url}\n" for name, url in urls.items())
        + f"  TalentLMS        {env['TALENTLMS_BASE_URL']}{' (local fake)' if fake else ''}\n"
        f"  Hotmart API      {env.get('HOTMART_API_BASE_URL', 'https://developers.hotmart.com')}"
        f" (reconciliation every {env.get('HOTMART_RECONCILE_INTERVAL_SECONDS', '900')} s)\n"
        f"  Hotmart webhook  POST {urls.get('ingest API', '')}/webhooks/hotmart\n"
        + "".join(f"  {name:<16} {shown(name, values, generated)}\n" for name in SECRET_NAMES[:2])
        + f"  operator console {urls.get('console API', '')}  (sign in with ADMIN_TOKEN)\n"
        + '  operator CLI     make cli ARGS="why <e-mail or transaction>"\n'
        + "  send samples     make samples   (in another terminal)\n"
        + ("  fake LMS         make fake-lms-down / make fake-lms-up\n" if fake else "")
        + "  stop             Ctrl-C\n",
        flush=True,
    )

    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, request_stop)

    lock = threading.Lock()
    children = [Child(spec, env, lock) for spec in specs]
    exit_code = 0
    try:
        for child in children:
            child.start()
        if fake and any(s.name == "enrollment-api" for s in specs):
            threading.Thread(target=map_demo_products, args=(env, stopping), daemon=True).start()
        exit_code = supervise(children, data_dir, stopping)
    finally:
        stopping.set()
        stop_children(children)
    print("stopped.", flush=True)
    return exit_code


def set_fake(name: str, up: bool) -> int:
    """``make fake-lms-down`` / ``make fake-lms-up``: ask the running stack to stop or restart a fake."""
    data_dir = Path(os.environ.get("COURSEBRIDGE_DATA_DIR", ".data")).resolve()
    flag = down_flag(data_dir, name)
    if up:
        flag.unlink(missing_ok=True)
        print(f"{name}: up requested (the running stack starts it within a second)")
    else:
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()
        print(f"{name}: down requested; CourseBridge retries until `make fake-lms-up`")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        parent, _dashes, *command = args[1:]
        exec_child(int(parent), command)
    parser = argparse.ArgumentParser(prog="tools/local_stack.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the whole stack in the foreground (the default)")
    sub.add_parser(
        "backfill", help="import historical Hotmart sales (make backfill ARGS=...)", add_help=False
    )
    fake = sub.add_parser("fake", help="stop or restart a fake of the running stack")
    fake.add_argument("state", choices=("down", "up"))
    fake.add_argument("--name", default="fake-talentlms")
    if args[:1] == ["backfill"]:
        return backfill(args[1:])
    options = parser.parse_args(args)
    if options.command == "fake":
        return set_fake(options.name, options.state == "up")
    return run_stack()


if __name__ == "__main__":
    sys.exit(main())
