"""End to end through real processes on the embedded backend: the TalentLMS fake, ingest (API + relay),
enrollment (API + worker). Webhook in -> enrolled in the fake LMS -> refund webhook -> removed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

HOTTOK = "e2e-hottok"
ADMIN = "e2e-admin-token"
LMS_KEY = "e2e-lms-key"
EMAIL = "bruno.lima@example.com"
WAIT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except requests.RequestException as error:
            last_error = error
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


def sample(name: str) -> bytes:
    return resources.files("ingest.samples").joinpath(f"{name}.json").read_bytes()


class Processes:
    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], **extra_env: str) -> None:
        log = (self.directory / f"{name}.log").open("wb")
        child = subprocess.Popen(
            argv,
            env={**self.env, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append((name, child))

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n" + (self.directory / f"{name}.log").read_text(errors="replace")[-3000:]
            for name, _ in self.children
        )

    def stop(self) -> None:
        for _, child in self.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    ports = {name: free_port() for name in ("fake", "ingest", "enrollment")}
    env = {
        **os.environ,
        "COURSEBRIDGE_BACKEND": "embedded",
        "COURSEBRIDGE_DATA_DIR": str(tmp_path / "data"),
        "HOTMART_HOTTOK": HOTTOK,
        "ADMIN_TOKEN": ADMIN,
        "TALENTLMS_BASE_URL": f"http://127.0.0.1:{ports['fake']}/api/v1",
        "TALENTLMS_API_KEY": LMS_KEY,
        "TALENTLMS_FAKE_PORT": str(ports["fake"]),
        "TALENTLMS_FAKE_API_KEY": LMS_KEY,
        "INGEST_RELAY_POLL_SECONDS": "0.05",
        "ENROLLMENT_RELAY_POLL_SECONDS": "0.05",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }
    for name in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    python = sys.executable
    subprocess.run(
        [python, "-c", "from coursebridge.tools import provision_main; provision_main()"],
        env=env,
        check=True,
        capture_output=True,
    )
    gunicorn = [python, "-m", "gunicorn", "-c", "python:coursebridge.runtime.gunicorn_conf", "--workers", "1"]
    processes = Processes(tmp_path, env)
    try:
        processes.start("fake-talentlms", [python, "-m", "talentlms_fake"])
        processes.start(
            "ingest-api", [*gunicorn, "ingest.entrypoints.api:create_app()"], PORT=str(ports["ingest"])
        )
        processes.start("ingest-relay", [python, "-m", "ingest.entrypoints.relay"])
        processes.start(
            "enrollment-api",
            [*gunicorn, "enrollment.entrypoints.api:create_app()"],
            PORT=str(ports["enrollment"]),
        )
        processes.start("enrollment-worker", [python, "-m", "enrollment.entrypoints.worker"])
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for name, path in (("fake", "/_fake/state"), ("ingest", "/healthz"), ("enrollment", "/healthz")):
            wait_for(lambda u=urls[name] + path: requests.get(u, timeout=2).ok, f"{name} to answer")
        yield urls
    except BaseException:
        print(processes.logs())
        raise
    finally:
        processes.stop()


def lms_courses(fake_url: str, email: str) -> set[str]:
    state = requests.get(f"{fake_url}/_fake/state", timeout=5).json()
    ids = {user["id"] for user in state["users"] if user["email"].lower() == email}
    return {e["course_id"] for e in state["enrollments"] if e["user_id"] in ids}


def post_webhook(ingest_url: str, body: bytes) -> None:
    response = requests.post(
        f"{ingest_url}/webhooks/hotmart",
        data=body,
        headers={"Content-Type": "application/json", "X-HOTMART-HOTTOK": HOTTOK},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"


def test_webhook_to_enrollment_and_refund_to_removal(stack: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    mapped = requests.put(
        f"{stack['enrollment']}/admin/products/4712", json={"course_ids": ["12"]}, headers=admin, timeout=10
    )
    assert mapped.status_code == 201, mapped.text

    post_webhook(stack["ingest"], sample("purchase_approved_one_off"))
    wait_for(lambda: lms_courses(stack["fake"], EMAIL) == {"12"}, "the student to be enrolled in course 12")
    calls = requests.get(f"{stack['fake']}/_fake/state", timeout=5).json()["calls"]
    print("LMS calls for a new student:", calls)
    assert sum(calls.values()) <= 2 + calls.get("ratelimit", 0), calls  # new student: signup + enroll

    post_webhook(stack["ingest"], sample("purchase_refunded"))
    wait_for(lambda: lms_courses(stack["fake"], EMAIL) == set(), "the student to be removed from course 12")

    view = requests.get(f"{stack['enrollment']}/students/{EMAIL}/enrollments", headers=admin, timeout=10)
    assert view.status_code == 200
    courses = view.json()["enrollments"]
    assert [(c["course_id"], c["status"]) for c in courses] == [("12", "revoked")]
    assert json.dumps(courses).count("tx:HP2000000001") >= 1
