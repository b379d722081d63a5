"""Fixtures for ingest's own tests: an app on the embedded backend in a temporary directory."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from coursebridge.backends import open_bus, open_store
from coursebridge.config import PlatformSettings
from coursebridge.topology import TOPOLOGY
from ingest.bootstrap import build_api
from ingest.config import IngestSettings

HOTTOK = "test-hottok-current"
OLD_HOTTOK = "test-hottok-previous"
ADMIN_TOKEN = "test-admin-token"


def make_approval(
    event_id: str | None = None, transaction: str = "HP9000000001", **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id or str(uuid.uuid4()),
        "creation_date": 1763726400000,
        "event": "PURCHASE_APPROVED",
        "version": "2.0.0",
        "data": {
            "product": {"id": 4712, "ucode": "abc-123", "name": "Watercolour Basics"},
            "buyer": {
                "email": "Ana.Silva@Example.com",
                "name": "Ana Silva",
                "checkout_phone": "+5511987654321",
                "document": "12345678909",
            },
            "purchase": {
                "transaction": transaction,
                "status": "APPROVED",
                "approved_date": 1763726399000,
                "price": {"value": 197.0, "currency_value": "BRL"},
            },
        },
    }
    body.update(overrides)
    return body


@pytest.fixture
def platform(tmp_path: Path) -> PlatformSettings:
    return PlatformSettings(backend="embedded", data_dir=tmp_path, service_name="ingest")


@pytest.fixture
def settings(platform: PlatformSettings) -> IngestSettings:
    return IngestSettings(platform=platform, hottoks=(HOTTOK, OLD_HOTTOK), admin_token=ADMIN_TOKEN)


@pytest.fixture
def store(platform: PlatformSettings):
    store = open_store(platform, "ingest")
    yield store
    store.close()


@pytest.fixture
def bus(platform: PlatformSettings):
    bus = open_bus(platform)
    bus.provision(TOPOLOGY)
    yield bus
    bus.close()


@pytest.fixture
def client(settings: IngestSettings):
    app = build_api(settings)
    return app.test_client()


def post_webhook(client, body: Any, hottok: str | None = HOTTOK, raw: bytes | None = None):
    headers = {"Content-Type": "application/json"}
    if hottok is not None:
        headers["X-HOTMART-HOTTOK"] = hottok
    data = raw if raw is not None else json.dumps(body).encode()
    return client.post("/webhooks/hotmart", data=data, headers=headers)


@pytest.fixture
def approval():
    """Factory of PURCHASE_APPROVED bodies: ``approval(transaction=..., event=..., **overrides)``."""
    return make_approval


@pytest.fixture
def post(client):
    """``post(body, hottok=..., raw=...)`` against the test app."""
    return lambda body, **kwargs: post_webhook(client, body, **kwargs)


@pytest.fixture
def tokens() -> dict[str, str]:
    return {"hottok": HOTTOK, "old_hottok": OLD_HOTTOK, "admin": ADMIN_TOKEN}


@pytest.fixture
def fake_hotmart():
    """A fake Hotmart on a loopback port: ``(server, state)``."""
    from hotmart_fake import STATE_EXTENSION, create_app
    from hotmart_fake.server import FakeHotmartServer

    app = create_app("cid", "csecret")
    with FakeHotmartServer(app) as server:
        yield server, app.extensions[STATE_EXTENSION]


def api_settings(server, **overrides: Any):
    import base64

    from ingest.adapters.hotmart_api import HotmartApiSettings

    values = {
        "client_id": "cid",
        "client_secret": "csecret",
        "basic": base64.b64encode(b"cid:csecret").decode(),
        "api_base_url": server.url,
        "auth_url": server.token_url,
        "timeout_seconds": 5.0,
        **overrides,
    }
    return HotmartApiSettings(**values)
