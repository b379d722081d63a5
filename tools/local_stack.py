"""``make run``: the whole pipeline on this machine, on the embedded backend, in the foreground.

Starts every service process, prefixes their output with the process name, and on Ctrl-C or SIGTERM
stops them all (SIGTERM to each process group, SIGKILL after a grace period). Without HOTMART_HOTTOK /
ADMIN_TOKEN it generates development values once, keeps them in the data directory and prints them.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str]


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets from the environment, else development values generated once and kept in the data dir."""
    path = data_dir / "dev-secrets.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key and value:
                stored[key] = value
    values = {}
    for name in ("HOTMART_HOTTOK", "ADMIN_TOKEN", "ANALYTICS_PSEUDONYM_KEY", "LOOKUP_HASH_KEY"):
        values[name] = (
            os.environ.get(name) or stored.get(name) or f"dev-{name.lower()}-{secrets.token_hex(8)}"
        )
    generated = {k: v for k, v in values.items() if not os.environ.get(k)}  # never write a real secret
    if generated != stored:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in generated.items()))
        path.chmod(0o600)
    return values


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
    if "TALENTLMS_BASE_URL" not in os.environ and _available("talentlms_fake.__main__"):
        specs.append(ProcessSpec("fake-talentlms", [python, "-m", "talentlms_fake"], {}))
    if "HOTMART_CLIENT_ID" not in os.environ and _available("hotmart_fake.__main__"):
        specs.append(ProcessSpec("fake-hotmart", [python, "-m", "hotmart_fake"], {}))
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


def local_env() -> dict[str, str]:
    """The environment every local process gets (``make run``, ``make backfill``)."""
    data_dir = Path(os.environ.get("COURSEBRIDGE_DATA_DIR", ".data")).resolve()
    env = {**os.environ, "COURSEBRIDGE_BACKEND": "embedded", "COURSEBRIDGE_DATA_DIR": str(data_dir)}
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(dev_secrets(data_dir))
    if "TALENTLMS_BASE_URL" not in os.environ:
        fake_port = env.setdefault("TALENTLMS_FAKE_PORT", FAKE_TALENTLMS_PORT)
        env["TALENTLMS_BASE_URL"] = f"http://127.0.0.1:{fake_port}/api/v1"
        env["TALENTLMS_API_KEY"] = env.get("TALENTLMS_API_KEY") or FAKE_TALENTLMS_API_KEY
    if "HOTMART_CLIENT_ID" not in os.environ:  # no real credentials: the local fake Hotmart
        hotmart_port = env.setdefault("HOTMART_FAKE_PORT", FAKE_HOTMART_PORT)
        env["HOTMART_CLIENT_ID"] = FAKE_HOTMART_CLIENT_ID
        env["HOTMART_CLIENT_SECRET"] = FAKE_HOTMART_CLIENT_SECRET
        env["HOTMART_API_BASE_URL"] = f"http://127.0.0.1:{hotmart_port}"
        env["HOTMART_AUTH_URL"] = f"http://127.0.0.1:{hotmart_port}/security/oauth/token"
    env.setdefault("SUBSCRIPTION_SWEEP_INTERVAL_SECONDS", "30")
    env.setdefault("ENROLLMENT_URL", f"http://127.0.0.1:{env.get('ENROLLMENT_PORT', '8081')}")
    return env


def backfill(argv: list[str]) -> int:
    """``make backfill ARGS=...``: the backfill CLI with the local stack's environment."""
    command = [sys.executable, "-m", "ingest.entrypoints.backfill", *argv]
    return subprocess.run(command, env=local_env(), cwd=ROOT, check=False).returncode


def main() -> int:
    env = local_env()
    data_dir = Path(env["COURSEBRIDGE_DATA_DIR"])
    provision(env)

    specs = process_specs(env)
    urls = {
        f"{service} API": f"http://127.0.0.1:{env.get(variable, port)}"
        for service, variable, port in SERVICES
        if any(spec.name == f"{service}-api" for spec in specs)
    }
    print(
        "\nCourseBridge local stack (embedded backend)\n"
        f"  data directory   {data_dir}\n"
        + "".join(f"  {name:<16} {url}\n" for name, url in urls.items())
        + f"  TalentLMS        {env.get('TALENTLMS_BASE_URL', '(not configured)')}\n"
        f"  Hotmart API      {env.get('HOTMART_API_BASE_URL', 'https://developers.hotmart.com')}"
        f" (reconciliation every {env.get('HOTMART_RECONCILE_INTERVAL_SECONDS', '900')} s)\n"
        f"  Hotmart webhook  POST {urls.get('ingest API', '')}/webhooks/hotmart\n"
        f"  HOTMART_HOTTOK   {env['HOTMART_HOTTOK']}\n"
        f"  ADMIN_TOKEN      {env['ADMIN_TOKEN']}\n"
        f"  operator console {urls.get('console API', '')}  (sign in with ADMIN_TOKEN)\n"
        '  operator CLI     make cli ARGS="why <e-mail or transaction>"\n'
        "  send samples     make samples   (in another terminal)\n"
        "  stop             Ctrl-C\n",
        flush=True,
    )

    lock = threading.Lock()
    children: list[tuple[ProcessSpec, subprocess.Popen[bytes]]] = []
    for spec in specs:
        child = subprocess.Popen(
            spec.argv,
            env={**env, **spec.env},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own signal handling decides when children stop
        )
        threading.Thread(target=_pump, args=(spec.name, child.stdout, lock), daemon=True).start()
        children.append((spec, child))

    stopping = threading.Event()
    if any(spec.name == "fake-talentlms" for spec in specs) and any(
        s.name == "enrollment-api" for s in specs
    ):
        threading.Thread(target=map_demo_products, args=(env, stopping), daemon=True).start()

    def request_stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    exit_code = 0
    while not stopping.wait(0.5):
        for spec, child in children:
            if child.poll() is not None:
                print(f"\n{spec.name} exited with {child.returncode}; stopping the stack", flush=True)
                exit_code = 1
                stopping.set()
                break

    print("\nstopping: SIGTERM to every process ...", flush=True)
    for _spec, child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for spec, child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{spec.name} did not stop in {GRACE_SECONDS}s: SIGKILL", flush=True)
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    print("stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    if sys.argv[1:2] == ["backfill"]:
        sys.exit(backfill(sys.argv[2:]))
    sys.exit(main())
