"""`make run`'s launcher as a newcomer uses it: start, send the samples, see them published, stop cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def local_stack(tmp_path: Path):
    ports = {
        name: str(_free_port())
        for name in (
            "INGEST_PORT",
            "ENROLLMENT_PORT",
            "SUBSCRIPTION_PORT",
            "ANALYTICS_PORT",
            "CONSOLE_PORT",
            "TALENTLMS_FAKE_PORT",
        )
    }
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HOTMART_HOTTOK", "ADMIN_TOKEN", "TALENTLMS_BASE_URL", "PUBSUB_EMULATOR_HOST")
    }
    env.update(ports, COURSEBRIDGE_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    env["ENROLLMENT_LEARNING_INTERVAL_SECONDS"] = "3"  # make run polls every 90 s; a test need not wait
    log = (tmp_path / "stack.log").open("wb")
    launcher = subprocess.Popen(
        [sys.executable, "tools/local_stack.py"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ingest = f"http://127.0.0.1:{ports['INGEST_PORT']}"

    def ready() -> bool:
        try:
            return requests.get(f"{ingest}/readyz", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        try:
            wait_for(ready, "ingest to be ready", 60)
        except AssertionError as error:
            raise AssertionError((tmp_path / "stack.log").read_text()[-3000:]) from error
        yield {
            "ingest": ingest,
            "env": env,
            "ports": ports,
            "launcher": launcher,
            "log": tmp_path / "stack.log",
        }
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        log.close()


def test_samples_are_accepted_deduplicated_and_published_then_the_stack_stops_cleanly(local_stack):
    env = local_stack["env"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest.entrypoints.send_samples",
            "--url",
            local_stack["ingest"],
            "--wait",
            "60",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "200 accepted / 200 duplicate" in result.stdout
    assert "published to the payments topic" in result.stdout
    # The fake TalentLMS's learners sign in by themselves, enrollment's poller reads the timeline and
    # analytics projects it: the Learning views of a fresh stack fill through the production path.
    secrets = (Path(env["COURSEBRIDGE_DATA_DIR"]) / "dev-secrets.env").read_text().splitlines()
    token = next(line.split("=", 1)[1] for line in secrets if line.startswith("ADMIN_TOKEN="))
    today = datetime.now(UTC).date()
    cohorts = (
        f"http://127.0.0.1:{local_stack['ports']['ANALYTICS_PORT']}/learning/cohorts"
        f"?from={today - timedelta(days=365)}&to={today}"
    )

    def learning_arrived() -> bool:
        try:
            response = requests.get(cohorts, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        except requests.RequestException:
            return False
        return response.ok and response.json()["activity"]["events"] > 0

    wait_for(learning_arrived, "analytics to hold TalentLMS activity read by enrollment", 90)

    launcher = local_stack["launcher"]
    launcher.send_signal(signal.SIGTERM)  # what Ctrl-C or a supervisor does
    assert launcher.wait(60) == 0
    open_ports = [name for name, port in local_stack["ports"].items() if _port_open(int(port))]
    assert open_ports == [], f"still listening after stop: {open_ports}"
    output = local_stack["log"].read_text()
    assert "stopped." in output
    for secret_marker in ("@example.com", "checkout_phone"):
        assert secret_marker not in output, f"{secret_marker!r} leaked into the stack's logs"
