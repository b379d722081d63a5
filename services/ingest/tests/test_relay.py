"""The outbox relay on the embedded backend: publishes in order, keeps what it could not publish."""

from __future__ import annotations

import json
import threading
import time

from coursebridge.outbox import OUTBOX_KIND as OUTBOX
from coursebridge.ports import BusUnavailable
from ingest.service_layer.intake import WEBHOOKS, accept_webhook
from ingest.service_layer.relay import webhook_relay


def _accept(store, body):
    return accept_webhook(store, json.dumps(body).encode())


def _collect(bus, subscription="analytics.payments"):
    received = []
    runner = bus.subscribe(subscription, lambda event, delivery: received.append((event, delivery)))
    return received, runner


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_relay_publishes_pending_webhooks_and_empties_the_outbox(store, bus, approval):
    bodies = [approval(transaction="HP1"), approval(transaction="HP2")]
    for body in bodies:
        _accept(store, body)
    relay = webhook_relay(store, bus)
    result = relay.relay_once()
    assert result.published == 2 and not result.errors
    assert store.query(OUTBOX) == []
    for body in bodies:
        webhook = store.get(WEBHOOKS, body["id"])
        assert webhook["status"] == "published" and webhook["message_id"]
    received, runner = _collect(bus)
    assert _wait(lambda: len(received) == 2)
    runner.stop()
    assert {event.subject for event, _ in received} == {"HP1", "HP2"}
    assert {delivery.ordering_key for _, delivery in received} == {"HP1", "HP2"}


def test_events_of_one_purchase_keep_their_order(store, bus, approval):
    approved = approval(transaction="HP7")
    refunded = approval(transaction="HP7", event="PURCHASE_REFUNDED")
    refunded["data"]["purchase"]["status"] = "REFUNDED"
    _accept(store, approved)
    _accept(store, refunded)
    webhook_relay(store, bus).relay_once()
    received, runner = _collect(bus)
    assert _wait(lambda: len(received) == 2)
    runner.stop()
    assert [event.data["kind"] for event, _ in received] == ["purchase_approved", "purchase_refunded"]


class _FlakyBus:
    """Fails every publish while ``down`` is set, then delegates to the real bus."""

    def __init__(self, bus):
        self.bus = bus
        self.down = True

    def publish(self, topic, event, ordering_key=None):
        if self.down:
            raise BusUnavailable("bus is down")
        return self.bus.publish(topic, event, ordering_key)


def test_when_the_bus_is_down_entries_wait_and_go_out_after_recovery(store, bus, approval):
    _accept(store, approval(transaction="HP3"))
    _accept(store, approval(transaction="HP3", event="PURCHASE_COMPLETE"))
    flaky = _FlakyBus(bus)
    relay = webhook_relay(store, flaky)
    down_round = relay.relay_once()
    assert down_round.published == 0 and down_round.deferred == 2 and down_round.errors
    assert len(store.query(OUTBOX)) == 2
    flaky.down = False
    assert relay.relay_once().published == 2
    assert store.query(OUTBOX) == []


def test_run_loop_stops_when_asked(store, bus, approval):
    relay = webhook_relay(store, bus)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop, 0.02))
    thread.start()
    _accept(store, approval(transaction="HP4"))
    assert _wait(lambda: store.query(OUTBOX) == [])
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
