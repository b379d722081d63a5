"""On Google's emulators: webhooks keep being accepted while Pub/Sub is down, and go out after recovery.

Ingest's store is Firestore (emulator) and its bus Pub/Sub (emulator). The Pub/Sub emulator is stopped
for real (its process group killed) while webhooks arrive; the relay keeps them in the outbox and backs
off; once the emulator is back (empty, as a restarted emulator is) and the topology is provisioned again,
the relay publishes every accepted webhook, in order per purchase, with nothing lost.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from waiting import wait_for

from coursebridge.adapters.firestore_store import FirestoreStore
from coursebridge.adapters.pubsub_bus import PubSubBus
from coursebridge.config import PlatformSettings
from coursebridge.outbox import OUTBOX_KIND as OUTBOX
from coursebridge.ports import BusUnavailable
from coursebridge.topology import TOPOLOGY
from ingest.bootstrap import build_api
from ingest.config import IngestSettings
from ingest.service_layer.relay import webhook_relay

SAMPLES = Path(__file__).resolve().parents[2] / "services" / "ingest" / "src" / "ingest" / "samples"
HOTTOK = "outage-test-hottok"

pytestmark = pytest.mark.emulator


def _webhook(name: str, transaction: str) -> dict:
    body = json.loads((SAMPLES / name).read_text())
    body["id"] = str(uuid.uuid4())
    body["data"]["purchase"]["transaction"] = transaction
    return body


class _ProvisioningGate:
    """Holds publishes back while the restarted emulator is re-provisioned.

    A restarted emulator is empty: a publish landing between the topic's and the subscription's creation
    would reach no subscriber. On GCP topics and subscriptions outlive any outage, so this is only about
    the emulator; while closed, publishing fails exactly as during the outage.
    """

    def __init__(self, bus):
        self.bus = bus
        self.closed = threading.Event()

    def publish(self, topic, event, ordering_key=None):
        if self.closed.is_set():
            raise BusUnavailable("re-provisioning after the restart")
        return self.bus.publish(topic, event, ordering_key)


def test_webhooks_accepted_during_a_pubsub_outage_are_published_after_recovery(
    pubsub_emulator, firestore_emulator, gcp_project, tmp_path
):
    settings = IngestSettings(
        platform=PlatformSettings(backend="gcp", gcp_project=gcp_project, data_dir=tmp_path),
        hottoks=(HOTTOK,),
    )
    client = build_api(settings).test_client()
    store = FirestoreStore("ingest", project=gcp_project)
    bus = PubSubBus(gcp_project, publish_timeout=2.0)
    bus.provision(TOPOLOGY)

    def post(body: dict) -> str:
        response = client.post("/webhooks/hotmart", json=body, headers={"X-HOTMART-HOTTOK": HOTTOK})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.json["status"]

    gate = _ProvisioningGate(bus)
    relay = webhook_relay(store, gate, batch_size=50)
    before = _webhook("purchase_approved_one_off.json", "HP7000000001")
    assert post(before) == "accepted"
    assert relay.relay_once().published == 1

    pubsub_emulator.stop()
    during = [
        _webhook("purchase_approved_one_off.json", "HP7000000002"),
        _webhook("purchase_refunded.json", "HP7000000002"),
        _webhook("purchase_chargeback.json", "HP7000000003"),
    ]
    for body in during:
        assert post(body) == "accepted"  # Hotmart still gets 2xx: nothing waits on Pub/Sub
    assert post(during[0]) == "duplicate"

    failed_round = relay.relay_once()
    assert failed_round.published == 0 and failed_round.errors
    assert len(store.query(OUTBOX)) == 3  # kept, not lost

    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop, 0.1, 1.0), daemon=True)
    thread.start()
    time.sleep(1.0)  # the relay is now failing and backing off
    gate.closed.set()
    pubsub_emulator.restart()
    bus.provision(TOPOLOGY)  # a restarted emulator is empty; on GCP topics persist (k8s/ manifests)

    received: list = []
    lock = threading.Lock()

    def collect(event, delivery):
        with lock:
            received.append(event)

    runner = bus.subscribe("analytics.payments", collect)
    gate.closed.clear()  # topics and subscriptions exist again: let the relay's retries through
    try:
        wait_for(lambda: store.query(OUTBOX) == [], "the relay to drain the outbox after recovery", 60)
        wait_for(lambda: len(received) >= len(during), "every outage webhook to be delivered", 30)
    finally:
        stop.set()
        thread.join(10)
        runner.stop()
        relay.close()
        bus.close()
        store.close()

    # The restarted emulator only holds what was published after recovery: exactly the outage's webhooks,
    # once each, and one purchase's events in the order they were accepted.
    assert sorted(e.data["hotmart"]["event_id"] for e in received) == sorted(b["id"] for b in during)
    same_purchase = [e.data["kind"] for e in received if e.data["transaction"] == "HP7000000002"]
    assert same_purchase == ["purchase_approved", "purchase_refunded"]
    check = FirestoreStore("ingest", project=gcp_project)
    assert all(check.get("webhooks", b["id"])["status"] == "published" for b in [before, *during])
    check.close()
