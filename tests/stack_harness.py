"""The CourseBridge pipeline as real processes, for end-to-end, fault-injection and security tests.

``Stack`` starts the TalentLMS fake, ingest (gunicorn API + outbox relay) and enrollment (gunicorn API +
worker), optionally subscription (API + worker), analytics (API + worker) and an empty Hotmart fake
(``hotmart=True``: every process gets its HOTMART_* API settings and ``reconcile()`` runs one
reconciliation round, as the CronJob does), on loopback ports of their own, on the embedded backend or on
Google's emulators (``backend="gcp"`` with the emulator hosts and a project of its own). Each process runs
in its own session, so ``kill()`` (SIGKILL by default) reaches the whole process group, and every
process's output goes to ``<workdir>/<name>.log``.
Waits are bounded; ``stop()`` never leaves anything behind (SIGTERM, then SIGKILL after a grace period).

Also: ``Purchases``, a small generator of Hotmart webhooks built from the real samples, with the model of
the LMS state they must produce.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import requests
import waiting

HOTTOK = "faults-hottok-5f1c2a"
ADMIN_TOKEN = "faults-admin-token-9d3e7b"
LMS_API_KEY = "faults-lms-api-key-4a8c0e"
HOTMART_CLIENT_ID = "faults-hotmart-client"
PSEUDONYM_KEY = "faults-pseudonym-key-3c6e1f"
HOTMART_CLIENT_SECRET = "faults-hotmart-secret-7b2d91"  # the test fake's credential, no secret
GUNICORN = ["-m", "gunicorn", "-c", "python:coursebridge.runtime.gunicorn_conf", "--workers", "1"]
# Product mappings the tests create: 4711 -> two courses, 4712 -> one. 4799 stays unmapped (parked).
MAPPINGS = {"4711": ["7", "9"], "4712": ["12"]}
UNMAPPED_PRODUCT = "4799"


# The production topology with test-sized timings: a 10 s ack deadline (a killed worker's messages come
# back in seconds, not a minute) and 0.5-2 s nack backoff (the embedded bus honours it; the Pub/Sub
# emulator ignores backoff). Same topics, subscriptions, ordering, dead-letter policy and attempts.
FAST_PROVISION = """
from dataclasses import replace
from coursebridge.backends import open_bus
from coursebridge.config import PlatformSettings
from coursebridge.topology import TOPOLOGY, Topology
fast = Topology(TOPOLOGY.topics, tuple(
    replace(s, ack_deadline_seconds=10, min_backoff_seconds=0.5, max_backoff_seconds=2.0)
    for s in TOPOLOGY.subscriptions))
bus = open_bus(PlatformSettings.from_env("provision"))
bus.provision(fast)
bus.close()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# HTTP polls: a process that is still starting refuses connections, which only means "not yet".
wait_for = functools.partial(waiting.wait_for, interval=0.2, tolerate=(requests.RequestException,))


def sample(name: str) -> dict[str, Any]:
    return json.loads(resources.files("ingest.samples").joinpath(f"{name}.json").read_text("utf-8"))


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0


class Stack:
    """See the module docstring. ``urls`` maps fake / ingest / enrollment / subscription to base URLs."""

    def __init__(
        self,
        workdir: Path,
        *,
        backend: str = "embedded",
        project: str | None = None,
        pubsub_host: str | None = None,
        firestore_host: str | None = None,
        subscription: bool = False,
        extra_env: dict[str, str] | None = None,
        fake_env: dict[str, str] | None = None,
        fast_topology: bool = False,
        hotmart: bool = False,
        analytics: bool = False,
    ) -> None:
        self.workdir = workdir
        self.fast_topology = fast_topology
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        names = (
            "fake",
            "ingest",
            "enrollment",
            "subscription",
            *(("hotmart",) if hotmart else ()),
            *(("analytics",) if analytics else ()),
        )
        self.ports = {name: free_port() for name in names}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        env = {
            key: value
            for key, value in os.environ.items()
            if key
            not in (
                "PUBSUB_EMULATOR_HOST",
                "FIRESTORE_EMULATOR_HOST",
                "PROMETHEUS_MULTIPROC_DIR",
                "GOOGLE_CLOUD_PROJECT",
                "HOTMART_HOTTOK",
                "ADMIN_TOKEN",
                "TALENTLMS_BASE_URL",
                "TALENTLMS_API_KEY",
                "HOTMART_CLIENT_ID",
                "HOTMART_CLIENT_SECRET",
                "HOTMART_BASIC",
                "HOTMART_API_BASE_URL",
                "HOTMART_AUTH_URL",
                "HOTMART_RECONCILE_LOOP",
                "HOTMART_FAKE_PORT",
            )
        }
        env.update(
            COURSEBRIDGE_BACKEND=backend,
            COURSEBRIDGE_DATA_DIR=str(workdir / "data"),
            HOTMART_HOTTOK=HOTTOK,
            ADMIN_TOKEN=ADMIN_TOKEN,
            TALENTLMS_BASE_URL=f"{self.urls['fake']}/api/v1",
            TALENTLMS_API_KEY=LMS_API_KEY,
            TALENTLMS_FAKE_PORT=str(self.ports["fake"]),
            TALENTLMS_FAKE_API_KEY=LMS_API_KEY,
            TALENTLMS_TIMEOUT_SECONDS="2",
            INGEST_RELAY_POLL_SECONDS="0.05",
            ENROLLMENT_RELAY_POLL_SECONDS="0.05",
            ENROLLMENT_LEASE_SECONDS="6",
            COURSEBRIDGE_RELAY_LEASE_SECONDS="6",  # a relay restarted after kill -9 takes over soon
            SUBSCRIPTION_SWEEP_INTERVAL_SECONDS="5",
            ANALYTICS_PSEUDONYM_KEY=PSEUDONYM_KEY,
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="INFO",
        )
        if backend == "gcp":
            assert project and pubsub_host and firestore_host, "gcp needs a project and both emulators"
            env.update(
                GOOGLE_CLOUD_PROJECT=project,
                PUBSUB_EMULATOR_HOST=pubsub_host,
                FIRESTORE_EMULATOR_HOST=firestore_host,
            )
        if hotmart:
            env.update(
                HOTMART_CLIENT_ID=HOTMART_CLIENT_ID,
                HOTMART_CLIENT_SECRET=HOTMART_CLIENT_SECRET,
                HOTMART_API_BASE_URL=self.urls["hotmart"],
                HOTMART_AUTH_URL=f"{self.urls['hotmart']}/security/oauth/token",
            )
        env.update(extra_env or {})
        self.env = env
        python = sys.executable
        self.children: dict[str, Child] = {}
        specs: list[tuple[str, list[str], dict[str, str]]] = [
            ("fake-talentlms", [python, "-m", "talentlms_fake"], dict(fake_env or {})),
            ("ingest-api", [python, *GUNICORN, "ingest.entrypoints.api:create_app()"], self._api("ingest")),
            ("ingest-relay", [python, "-m", "ingest.entrypoints.relay"], {}),
            (
                "enrollment-api",
                [python, *GUNICORN, "enrollment.entrypoints.api:create_app()"],
                self._api("enrollment"),
            ),
            ("enrollment-worker", [python, "-m", "enrollment.entrypoints.worker"], {}),
        ]
        if subscription:
            specs += [
                (
                    "subscription-api",
                    [python, *GUNICORN, "subscription.entrypoints.api:create_app()"],
                    self._api("subscription"),
                ),
                ("subscription-worker", [python, "-m", "subscription.entrypoints.worker"], {}),
            ]
        if analytics:
            specs += [
                (
                    "analytics-api",
                    [python, *GUNICORN, "analytics.entrypoints.api:create_app()"],
                    self._api("analytics"),
                ),
                ("analytics-worker", [python, "-m", "analytics.entrypoints.worker"], {}),
            ]
        if hotmart:  # empty: each test seeds the sales it needs
            fake_hotmart = {"HOTMART_FAKE_PORT": str(self.ports["hotmart"]), "HOTMART_FAKE_SEED": "0"}
            specs.append(("fake-hotmart", [python, "-m", "hotmart_fake"], fake_hotmart))
        for name, argv, extra in specs:
            self.children[name] = Child(name, argv, {**env, **extra}, workdir / f"{name}.log")

    def _api(self, service: str) -> dict[str, str]:
        metrics = self.workdir / "metrics" / service
        metrics.mkdir(parents=True, exist_ok=True)
        return {
            "PORT": str(self.ports[service]),
            "HOST": "127.0.0.1",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }

    # --- lifecycle --------------------------------------------------------------------------------------

    def provision(self) -> None:
        """``provision_main()``, or with ``fast_topology`` the same topology with test-sized timings."""
        code = (
            FAST_PROVISION
            if self.fast_topology
            else "from coursebridge.tools import provision_main; provision_main()"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert result.returncode == 0, f"provisioning failed:\n{result.stdout}\n{result.stderr}"

    def start(self, ready_timeout: float = 60.0) -> Stack:
        self.provision()
        for name in self.children:
            self.start_process(name)
        for name, path in (("fake", "/_fake/state"), ("ingest", "/readyz"), ("enrollment", "/readyz")):
            wait_for(
                lambda u=self.urls[name] + path: requests.get(u, timeout=2).ok,
                f"{name} to answer",
                ready_timeout,
            )
        if "subscription-api" in self.children:
            wait_for(
                lambda: requests.get(self.urls["subscription"] + "/readyz", timeout=2).ok,
                "subscription to answer",
                ready_timeout,
            )
        if "analytics-api" in self.children:
            wait_for(
                lambda: requests.get(self.urls["analytics"] + "/readyz", timeout=2).ok,
                "analytics to answer",
                ready_timeout,
            )
        if "fake-hotmart" in self.children:
            wait_for(
                lambda: requests.get(self.urls["hotmart"] + "/_fake/state", timeout=2).ok,
                "the Hotmart fake to answer",
                ready_timeout,
            )
        return self

    def start_process(self, name: str) -> None:
        child = self.children[name]
        child.starts += 1
        with child.log_path.open("ab") as log:
            log.write(f"\n=== start #{child.starts} of {name} ===\n".encode())
            log.flush()
            child.process = subprocess.Popen(
                child.argv,
                env=child.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str, sig: int = signal.SIGKILL, *, reap: bool = True) -> None:
        """Signal the process group of ``name`` (kill -9 by default) and reap it (unless ``reap=False``,
        for SIGSTOP / SIGCONT)."""
        child = self.children[name]
        process = child.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        if not reap:
            return
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def restart(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.kill(name, sig)
        self.start_process(name)

    def alive(self) -> dict[str, bool]:
        return {n: c.process is not None and c.process.poll() is None for n, c in self.children.items()}

    def stop(self, grace: float = 15.0) -> None:
        running = [c for c in self.children.values() if c.process is not None and c.process.poll() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + grace
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait(10)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self, tail: int = 4000, names: Iterable[str] | None = None) -> str:
        out = []
        for name in names or self.children:
            path = self.children[name].log_path
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            out.append(f"--- {name} ---\n{text[-tail:]}")
        return "\n".join(out)

    # --- talking to it ----------------------------------------------------------------------------------

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def map_products(self, mappings: dict[str, list[str]] = MAPPINGS) -> None:
        """Map products to courses (once the worker has read TalentLMS's course list: 503 before)."""
        for product, courses in mappings.items():

            def put(product: str = product, courses: list[str] = courses) -> list[requests.Response]:
                response = requests.put(
                    f"{self.urls['enrollment']}/admin/products/{product}",
                    json={"course_ids": courses},
                    headers=self.admin,
                    timeout=10,
                )
                return [] if response.status_code == 503 else [response]  # a list: 4xx stays truthy

            [response] = wait_for(put, timeout=60, what="the course list to load")
            assert response.status_code in (200, 201), response.text

    def post_webhook(self, body: dict[str, Any] | bytes, session: requests.Session | None = None) -> dict:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = (session or requests).post(
            f"{self.urls['ingest']}/webhooks/hotmart",
            data=data,
            headers={"Content-Type": "application/json", "X-HOTMART-HOTTOK": HOTTOK},
            timeout=15,
        )
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    def hotmart(self, path: str, body: Any) -> Any:
        """POST a control of the Hotmart fake (``sales``, ``subscriptions``, ``send-webhooks``, ...)."""
        response = requests.post(f"{self.urls['hotmart']}/_fake/{path}", json=body, timeout=30)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    def send_hotmart_webhooks(
        self, transactions: list[str] | None = None, subscriber_codes: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Have the Hotmart fake send the webhooks of the sales / cancellations it holds to ingest."""
        body: dict[str, Any] = {"url": f"{self.urls['ingest']}/webhooks/hotmart", "hottok": HOTTOK}
        if transactions is not None:
            body["transactions"] = transactions
        if subscriber_codes is not None:
            body["subscriber_codes"] = subscriber_codes
        return self.hotmart("send-webhooks", body)["sent"]

    def reconcile(self, timeout: float = 60.0) -> dict[str, Any]:
        """One reconciliation round, as the CronJob runs it (``python -m ingest.entrypoints.reconcile``)."""
        result = subprocess.run(
            [sys.executable, "-m", "ingest.entrypoints.reconcile"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"reconciliation failed:\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    def fake_state(self) -> dict[str, Any]:
        response = requests.get(f"{self.urls['fake']}/_fake/state", timeout=10)
        response.raise_for_status()
        return response.json()

    def set_lms_failure(self, mode: str, seconds: float | None = None, count: int | None = None) -> None:
        body: dict[str, Any] = {"mode": mode}
        if seconds is not None:
            body["seconds"] = seconds
        if count is not None:
            body["count"] = count
        response = requests.post(f"{self.urls['fake']}/_fake/failures", json=body, timeout=10)
        assert response.ok, response.text

    def webhook_status(self, hotmart_id: str) -> dict[str, Any] | None:
        response = requests.get(
            f"{self.urls['ingest']}/webhooks/hotmart/{hotmart_id}", headers=self.admin, timeout=10
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def student(self, email: str) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.urls['enrollment']}/students/{email}/enrollments", headers=self.admin, timeout=10
        )
        response.raise_for_status()
        return response.json()["enrollments"]

    def parked(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.urls['enrollment']}/admin/parked", headers=self.admin, timeout=10)
        response.raise_for_status()
        return response.json()["parked"]


def lms_pairs(state: dict[str, Any]) -> set[tuple[str, str]]:
    """(email, course id) pairs enrolled in the fake LMS."""
    emails = {user["id"]: user["email"].lower() for user in state["users"]}
    return {(emails[e["user_id"]], e["course_id"]) for e in state["enrollments"]}


# --- webhooks and their model -----------------------------------------------------------------------------


@dataclass
class Purchase:
    email: str
    transaction: str
    product: str
    approval: dict[str, Any]
    refund: dict[str, Any] | None = None

    @property
    def courses(self) -> list[str]:
        return MAPPINGS.get(self.product, [])


@dataclass
class Purchases:
    """``n`` one-off purchases from the real approval sample, a share refunded or charged back, some for
    an unmapped product; ``expected()`` is the set of (email, course) pairs that must end up enrolled."""

    n: int
    refund_every: int = 4
    unmapped_every: int = 9
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    items: list[Purchase] = field(default_factory=list)

    def __post_init__(self) -> None:
        approval = sample("purchase_approved_one_off")
        refund = sample("purchase_refunded")
        chargeback = sample("purchase_chargeback")
        for i in range(self.n):
            if i % self.unmapped_every == self.unmapped_every - 1:
                product = UNMAPPED_PRODUCT
            else:
                product = "4711" if i % 2 else "4712"
            email = f"student{i}.{self.tag}@example.com"
            transaction = f"HPF{self.tag.upper()}{i:05d}"
            body = self._body(approval, email, transaction, product)
            purchase = Purchase(email, transaction, product, body)
            if i % self.refund_every == 1:
                template = chargeback if i % (2 * self.refund_every) == 1 else refund
                purchase.refund = self._body(template, email, transaction, product)
            self.items.append(purchase)

    @staticmethod
    def _body(template: dict[str, Any], email: str, transaction: str, product: str) -> dict[str, Any]:
        body = copy.deepcopy(template)
        body["id"] = str(uuid.uuid4())
        data = body["data"]
        data["buyer"]["email"] = email
        data["purchase"]["transaction"] = transaction
        data["product"]["id"] = int(product)
        return body

    def webhooks(self) -> list[dict[str, Any]]:
        out = []
        for purchase in self.items:
            out.append(purchase.approval)
            if purchase.refund is not None:
                out.append(purchase.refund)
        return out

    def expected(self) -> set[tuple[str, str]]:
        return {(p.email, course) for p in self.items if p.refund is None for course in p.courses}

    def revoked_or_never(self) -> set[tuple[str, str]]:
        return {(p.email, course) for p in self.items if p.refund is not None for course in p.courses}

    def parked_emails(self) -> set[str]:
        return {p.email for p in self.items if p.product == UNMAPPED_PRODUCT and p.refund is None}
