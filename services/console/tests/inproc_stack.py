"""The four services and the console in this process, each on a loopback port of its own.

Real Flask apps, real workers (ingest's relay, enrollment's dispatcher and keepers, subscription's), one
embedded bus and the embedded stores in a temporary directory, and the in-memory TalentLMS: what the
console's tests and its browser proof drive. Everything stops in ``close()``; waits are bounded.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests

from coursebridge import lookup
from coursebridge.backends import open_bus, open_store
from coursebridge.config import PlatformSettings
from coursebridge.topology import TOPOLOGY

ADMIN_TOKEN = "console-test-admin-token-6b1f"
HOTTOK = "console-test-hottok-2c9a"
LOOKUP_KEY = "console-test-lookup-key"


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _ThreadingServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address):  # one thread per request: pages fan out
        thread = threading.Thread(target=self._handle, args=(request, client_address), daemon=True)
        thread.start()

    def _handle(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class InProcessStack:
    def __init__(self, data_dir: Path) -> None:
        from analytics.bootstrap import build_api as analytics_api
        from analytics.config import AnalyticsSettings
        from enrollment.adapters.memory_lms import InMemoryLearningPlatform
        from enrollment.bootstrap import build_api as enrollment_api
        from enrollment.bootstrap import build_worker as enrollment_worker
        from enrollment.config import EnrollmentSettings
        from ingest.bootstrap import build_api as ingest_api
        from ingest.bootstrap import build_relay_worker
        from ingest.config import IngestSettings
        from subscription.bootstrap import build_api as subscription_api
        from subscription.bootstrap import build_worker as subscription_worker
        from subscription.config import SubscriptionSettings

        lookup.configure(LOOKUP_KEY)
        self.data_dir = data_dir
        self._servers: list[tuple[WSGIServer, threading.Thread]] = []
        self.workers: list[Any] = []
        platform = PlatformSettings(backend="embedded", data_dir=data_dir, service_name="test")
        self.bus = open_bus(platform)
        self.bus.provision(TOPOLOGY)
        self.stores = {name: open_store(platform, name) for name in ("enrollment", "subscription")}
        self.lms = InMemoryLearningPlatform(
            courses={"7": "Watercolour Basics", "9": "Oil Painting", "11": "Ink"}
        )
        self.urls: dict[str, str] = {}

        ingest_settings = IngestSettings(platform=platform, hottoks=(HOTTOK,), admin_token=ADMIN_TOKEN)
        self.urls["ingest"] = self._serve(ingest_api(ingest_settings))
        relay = build_relay_worker(ingest_settings)
        enrollment_settings = EnrollmentSettings(
            platform=platform, admin_token=ADMIN_TOKEN, relay_poll_interval=0.05, lease_seconds=6
        )
        self.urls["enrollment"] = self._serve(
            enrollment_api(enrollment_settings, store=self.stores["enrollment"], lms=self.lms)
        )
        enrollment = enrollment_worker(
            enrollment_settings, store=self.stores["enrollment"], bus=self.bus, lms=self.lms
        )
        subscription_settings = SubscriptionSettings(platform=platform, admin_token=ADMIN_TOKEN)
        self.urls["subscription"] = self._serve(
            subscription_api(subscription_settings, store=self.stores["subscription"])
        )
        subscription = subscription_worker(
            subscription_settings, store=self.stores["subscription"], bus=self.bus
        )
        analytics_settings = AnalyticsSettings(
            platform=platform, pseudonym_key=b"console-test-pseudonym", admin_token=ADMIN_TOKEN
        )
        from analytics.bootstrap import open_warehouse

        warehouse = open_warehouse(analytics_settings)
        warehouse.migrate()  # what the analytics worker does first
        self.warehouse = warehouse
        self.urls["analytics"] = self._serve(analytics_api(analytics_settings, warehouse))
        for worker in (relay, enrollment, subscription):
            worker.start()
            self.workers.append(worker)

    def _serve(self, app) -> str:
        port = free_port()
        server = make_server("127.0.0.1", port, app, server_class=_ThreadingServer, handler_class=_Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self._servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    def serve_console(self, **overrides: Any) -> str:
        from console.bootstrap import build_app
        from console.config import ConsoleSettings, derived_secret_key

        settings = ConsoleSettings(
            admin_token=ADMIN_TOKEN,
            urls=dict(self.urls),
            secret_key=derived_secret_key(ADMIN_TOKEN),
            **overrides,
        )
        self.console_app = build_app(settings)
        self.urls["console"] = self._serve(self.console_app)
        return self.urls["console"]

    # --- driving it -----------------------------------------------------------------------------------

    def admin(self, service: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
        return requests.request(method, self.urls[service] + path, headers=headers, timeout=10, **kwargs)

    def webhook(self, body: dict[str, Any] | bytes) -> dict[str, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = requests.post(
            self.urls["ingest"] + "/webhooks/hotmart",
            data=data,
            headers={"Content-Type": "application/json", "X-HOTMART-HOTTOK": HOTTOK},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def record_events(self, events: list[Any]) -> int:
        """Payment (and learning) events straight into analytics' warehouse (what its worker would project
        from the bus; the stack runs no analytics worker). Returns how many were new."""
        from analytics.service_layer.projector import project_events

        return project_events(self.warehouse, events, b"console-test-pseudonym")

    def wait_course_list(self) -> None:
        wait_for(lambda: self.admin("enrollment", "GET", "/admin/lms/courses").ok, "TalentLMS's course list")

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(10)
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(5)
        for store in self.stores.values():
            store.close()
        self.bus.close()
        lookup.configure(None)


def approval(
    transaction: str, product_id: int = 4711, email: str = "ana@example.com", event_id: str | None = None
) -> dict[str, Any]:
    """A Hotmart 2.0 PURCHASE_APPROVED body (one-off purchase)."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "creation_date": int(time.time() * 1000),
        "event": "PURCHASE_APPROVED",
        "version": "2.0.0",
        "data": {
            "product": {"id": product_id, "ucode": f"u-{product_id}", "name": "Watercolour"},
            "buyer": {"email": email, "name": "Ana Souza"},
            "purchase": {
                "transaction": transaction,
                "status": "APPROVED",
                "approved_date": int(time.time() * 1000),
                "price": {"value": 197.0, "currency_value": "BRL"},
            },
        },
    }
