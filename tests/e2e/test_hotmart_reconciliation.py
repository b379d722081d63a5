"""End to end through ingest: the fake Hotmart holds approvals, a refund and a subscription cancellation
that no webhook announced. One reconciliation publishes exactly the events the webhooks would have, on the
payments topic; then the fake sends the same webhooks late, over HTTP, and nothing more is published.

Real parts: the fake Hotmart and the ingest API on loopback HTTP servers, the Hotmart API client, the
outbox relay and the embedded bus, with a subscriber on the payments topic collecting what is published.
"""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from coursebridge.backends import open_bus, open_store
from coursebridge.config import PlatformSettings
from coursebridge.topology import TOPOLOGY
from hotmart_fake import STATE_EXTENSION, Sale, Subscription, create_app
from hotmart_fake.server import FakeHotmartServer
from ingest.adapters.hotmart_api import HotmartApi, HotmartApiSettings
from ingest.bootstrap import build_api
from ingest.config import IngestSettings
from ingest.service_layer.intake import WEBHOOKS
from ingest.service_layer.recovery import reconcile
from ingest.service_layer.relay import webhook_relay

HOTTOK = "e2e-hottok"
HOUR_MS = 3_600_000


@pytest.fixture
def stack(tmp_path: Path):
    platform = PlatformSettings(backend="embedded", data_dir=tmp_path, service_name="ingest")
    store = open_store(platform, "ingest")
    bus = open_bus(platform)
    bus.provision(TOPOLOGY)
    app = build_api(IngestSettings(platform=platform, hottoks=(HOTTOK,), admin_token="admin"))
    ingest = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=ingest.serve_forever, daemon=True).start()
    fake_app = create_app("cid", "csecret")
    fake = FakeHotmartServer(fake_app).start()
    received: list[dict] = []
    runner = bus.subscribe("analytics.payments", lambda event, _d: received.append(event))
    api = HotmartApi(
        HotmartApiSettings(
            "cid",
            "csecret",
            base64.b64encode(b"cid:csecret").decode(),
            api_base_url=fake.url,
            auth_url=fake.token_url,
        )
    )
    yield {
        "store": store,
        "bus": bus,
        "api": api,
        "hotmart": fake_app.extensions[STATE_EXTENSION],
        "fake_url": fake.url,
        "webhook_url": f"http://127.0.0.1:{ingest.server_port}/webhooks/hotmart",
        "received": received,
    }
    runner.stop()
    fake.stop()
    ingest.shutdown()
    api.close()
    bus.close()
    store.close()


def relay_and_collect(stack, expected_total: int, timeout: float = 20.0) -> list:
    relay = webhook_relay(stack["store"], stack["bus"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        relay.relay_once()
        if len(stack["received"]) >= expected_total:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # anything beyond the expected would arrive now
    relay.relay_once()
    relay.close()
    return list(stack["received"])


def test_reconciliation_recovers_what_no_webhook_said_and_late_webhooks_change_nothing(stack):
    hotmart, now = stack["hotmart"], datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    # Delivered normally: the first charge of a subscription.
    sub = hotmart.add_subscription(
        Subscription(
            "SUBE2E01",
            4711,
            "member@example.com",
            transaction="HPE2E00003",
            accession_date=now_ms - 20 * HOUR_MS,
            plan_id=101,
            plan_name="Monthly",
        )
    )
    hotmart.add_sale(
        Sale(
            "HPE2E00003",
            4711,
            "member@example.com",
            order_date=now_ms - 20 * HOUR_MS,
            subscriber_code="SUBE2E01",
            recurrency_number=1,
        )
    )
    sent = requests.post(
        f"{stack['fake_url']}/_fake/send-webhooks",
        json={"url": stack["webhook_url"], "hottok": HOTTOK, "transactions": ["HPE2E00003"]},
        timeout=10,
    ).json()["sent"]
    assert [s["status"] for s in sent] == [200]
    assert len(relay_and_collect(stack, 1)) == 1
    stack["received"].clear()

    # Never announced: a one-off approval, an approval then refund, and the subscription's cancellation.
    hotmart.add_sale(Sale("HPE2E00001", 4712, "one.off@example.com", order_date=now_ms - 2 * HOUR_MS))
    refunded = hotmart.add_sale(
        Sale("HPE2E00002", 4712, "refund@example.com", order_date=now_ms - 30 * HOUR_MS)
    )
    refunded.set_status("REFUNDED", now_ms - HOUR_MS)
    sub.cancel(now_ms - 3 * HOUR_MS)

    report = reconcile(stack["store"], stack["api"], now)
    assert report.recovered == {
        "purchase_approved": 1,
        "purchase_refunded": 1,
        "subscription_cancellation": 1,
    }
    assert [m["subscriber_code"] for m in report.status_mismatches] == ["SUBE2E01"]
    events = relay_and_collect(stack, 3)
    by_type = {(e.type, e.subject): e for e in events}
    assert set(by_type) == {
        ("coursebridge.payment.purchase_approved.v1", "HPE2E00001"),
        ("coursebridge.payment.purchase_refunded.v1", "HPE2E00002"),
        ("coursebridge.payment.subscription_cancellation.v1", "SUBE2E01"),
    }
    approved = by_type[("coursebridge.payment.purchase_approved.v1", "HPE2E00001")].data
    assert approved["source"] == "reconciliation"
    assert approved["product"]["id"] == "4712" and approved["buyer"]["email"] == "one.off@example.com"
    assert approved["purchase"]["is_subscription"] is False
    cancellation = by_type[("coursebridge.payment.subscription_cancellation.v1", "SUBE2E01")].data
    assert cancellation["subscription"]["subscriber_code"] == "SUBE2E01"
    assert cancellation["subscription"]["next_charge_at"] is not None  # access runs until then
    assert cancellation["product"]["id"] == "4711"

    # A second round finds nothing new.
    again = reconcile(stack["store"], stack["api"], now + timedelta(minutes=15))
    assert sum(again.recovered.values()) == 0 and again.already_known >= 3

    # Hotmart delivers every webhook late: recorded, published never again.
    stack["received"].clear()
    late = requests.post(
        f"{stack['fake_url']}/_fake/send-webhooks",
        json={
            "url": stack["webhook_url"],
            "hottok": HOTTOK,
            "subscriber_codes": ["SUBE2E01"],
            "transactions": ["HPE2E00001", "HPE2E00002", "HPE2E00003"],
        },
        timeout=10,
    ).json()["sent"]
    assert len(late) == 5 and all(s["status"] == 200 for s in late)
    assert relay_and_collect(stack, 0, timeout=1.0) == []
    statuses = {d.data["hotmart_event"] + ":" + d.data["status"] for d in stack["store"].query(WEBHOOKS)}
    assert statuses == {
        "PURCHASE_APPROVED:published",  # HPE2E00003, delivered on time
        "PURCHASE_APPROVED:recovered_earlier",  # HPE2E00001, and HPE2E00002's approval
        "PURCHASE_REFUNDED:recovered_earlier",
        "SUBSCRIPTION_CANCELLATION:recovered_earlier",
    }
    assert len(stack["store"].query(WEBHOOKS)) == 5


def test_a_webhook_first_then_reconciliation_publishes_once(stack):
    hotmart, now = stack["hotmart"], datetime.now(UTC)
    hotmart.add_sale(
        Sale("HPE2E00010", 4712, "buyer@example.com", order_date=int(now.timestamp() * 1000) - HOUR_MS)
    )
    requests.post(
        f"{stack['fake_url']}/_fake/send-webhooks",
        json={"url": stack["webhook_url"], "hottok": HOTTOK, "transactions": ["HPE2E00010"]},
        timeout=10,
    )
    report = reconcile(stack["store"], stack["api"], now)
    assert sum(report.recovered.values()) == 0 and report.already_known == 1
    events = relay_and_collect(stack, 1)
    assert [(e.type, e.data["source"]) for e in events] == [
        ("coursebridge.payment.purchase_approved.v1", "webhook")
    ]
