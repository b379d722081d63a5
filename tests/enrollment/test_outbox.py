"""``coursebridge.outbox`` on both backends: entries written with the caller's transaction are published in
order per key and removed only once published; while the bus refuses, they wait."""

from __future__ import annotations

import threading
import time

import pytest

from coursebridge.events import Event, new_event
from coursebridge.events.diagnostics import DIAGNOSTIC_PING
from coursebridge.outbox import Outbox, OutboxRelay
from coursebridge.ports import BusUnavailable, Delivery, MessageBus
from coursebridge.topology import Subscription, Topology

PAIRED = [
    pytest.param("embedded", "embedded", id="embedded"),
    pytest.param("gcp", "gcp", id="gcp", marks=pytest.mark.emulator),
]
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.parametrize(("bus_backend", "store_backend"), PAIRED, indirect=True),
]
TOPOLOGY = Topology(
    topics=("pings",), subscriptions=(Subscription("tests.pings", "pings", ack_deadline_seconds=10),)
)


def ping(n: int) -> Event:
    return new_event(DIAGNOSTIC_PING.type, {"n": n}, source="tests/outbox")


class Refusing(MessageBus):
    def publish(self, topic, event, ordering_key=None):
        raise BusUnavailable("down")

    def subscribe(self, subscription, handler, *, max_in_flight=10):
        raise NotImplementedError

    def provision(self, topology) -> None:
        pass

    def check(self) -> None:
        pass


def test_relay_publishes_in_order_and_empties_the_outbox(bus_backend, store_backend) -> None:
    bus = bus_backend.make()
    bus.provision(TOPOLOGY)
    store = store_backend.make("enrollment")
    outbox = Outbox(store)
    events = [ping(n) for n in range(5)]

    def write(tx) -> None:
        store_change = tx.get("things", "a")
        tx.set("things", "a", {"count": (store_change or {}).get("count", 0) + 1})
        for event in events:
            outbox.add(tx, "pings", event, "key-1")

    store.transaction(write)
    assert len(outbox.pending()) == 5

    down = OutboxRelay(store, Refusing(), service="tests")
    assert down.relay_once().deferred == 5
    assert len(outbox.pending()) == 5
    down.close()

    received: list[int] = []
    lock = threading.Lock()

    def handler(event: Event, _delivery: Delivery) -> None:
        with lock:
            received.append(event.data["n"])

    runner = bus.subscribe("tests.pings", handler)
    relay = OutboxRelay(store, bus, service="tests")
    assert relay.relay_once().published == 5
    assert outbox.pending() == []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(received) < 5:
        time.sleep(0.05)
    runner.stop(5)
    relay.close()
    assert received == [0, 1, 2, 3, 4]
