"""The transactional outbox on every document store: per-key order from the store, poison entries aside.

The store is the real adapter (SQLite, or Firestore on its emulator); the bus is a recorder here, since
what is under test is what the relay asks of it. The fault suite runs relays against real buses.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from coursebridge import outbox as outbox_module
from coursebridge.events import Event, new_event
from coursebridge.events.diagnostics import DIAGNOSTIC_PING
from coursebridge.outbox import Outbox, OutboxRelay, key_doc_id
from coursebridge.ports import BusUnavailable, MessageBus, PublishRejected, SubscriptionRunner
from coursebridge.topology import Topology

if TYPE_CHECKING:
    from conftest import StoreBackend

pytestmark = pytest.mark.timeout(60)

TOPIC = "pings"


def ping(n: int) -> Event:
    return new_event(DIAGNOSTIC_PING.type, {"n": n}, source="tests/outbox")


class RecordingBus(MessageBus):
    """Records publishes; ``refuse`` maps an ``n`` to the exception its publish raises."""

    def __init__(self) -> None:
        self.published: list[tuple[str, int, str | None]] = []
        self.refuse: dict[int, Exception] = {}
        self._lock = threading.Lock()

    def publish(self, topic: str, event: Event, ordering_key: str | None = None) -> str:
        error = self.refuse.get(event.data["n"])
        if error is not None:
            raise error
        with self._lock:
            self.published.append((topic, event.data["n"], ordering_key))
            return str(len(self.published))

    def numbers(self, key: str | None = None) -> list[int]:
        return [n for _, n, k in self.published if key is None or k == key]

    def subscribe(self, subscription, handler, *, max_in_flight=10) -> SubscriptionRunner:
        raise NotImplementedError

    def provision(self, topology: Topology) -> None:
        raise NotImplementedError

    def check(self) -> None:
        pass


def add(store, n: int, key: str | None) -> None:
    store.transaction(lambda tx: Outbox(store).add(tx, TOPIC, ping(n), key))


def test_order_of_a_key_is_commit_order_even_when_the_writers_clocks_disagree(
    store_backend: StoreBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ingest pods, the second one's clock an hour behind: its later entry must still go second."""
    store = store_backend.make("ingest")
    stamps = iter([5_000, 1_000, 4_000, 500, 3_000])  # each writer's "clock", later commits stamped earlier
    monkeypatch.setattr(outbox_module, "next_sequence", lambda: next(stamps))
    for n in (1, 2, 3, 4):
        add(store, n, "purchase-1")
    add(store, 99, "purchase-2")
    bus = RecordingBus()
    relay = OutboxRelay(store, bus, batch_size=2)  # the key's head is not even in the first batch

    while relay.relay_once().published:
        pass

    assert bus.numbers("purchase-1") == [1, 2, 3, 4]
    assert bus.numbers("purchase-2") == [99]
    assert store.get("outbox-keys", key_doc_id("purchase-1")) is None  # queues go when empty
    assert Outbox(store).pending() == []
    relay.close()


def test_several_entries_of_one_key_in_one_transaction_keep_their_order(store_backend: StoreBackend) -> None:
    store = store_backend.make("subscription")

    def change(tx) -> None:
        tx.set("accesses", "a-1", {"state": "active"})  # the caller's own write comes first
        for n in (1, 2, 3):
            Outbox(store).add(tx, TOPIC, ping(n), "access-1")

    store.transaction(change)
    bus = RecordingBus()
    relay = OutboxRelay(store, bus)

    assert relay.relay_once().published == 3
    assert bus.numbers() == [1, 2, 3]
    relay.close()


def test_a_poison_entry_is_moved_aside_with_its_reason_and_the_others_flow(
    store_backend: StoreBackend,
) -> None:
    store = store_backend.make("enrollment")
    add(store, 1, "entitlement-1")
    add(store, 2, "entitlement-1")
    add(store, 3, "entitlement-2")
    (first,) = [d for d in Outbox(store).pending() if d.data["event"]["data"] == {"n": 1}]
    broken = {**first.data, "event": {**first.data["event"], "data": {"n": "one"}}}  # breaks its contract
    store.set("outbox", first.id, broken)
    bus = RecordingBus()
    relay = OutboxRelay(store, bus)

    round_ = relay.relay_once()

    assert (round_.published, round_.quarantined, round_.errors) == (2, 1, [])
    assert sorted(bus.numbers()) == [2, 3]
    (aside,) = Outbox(store).quarantined()
    assert aside.id == first.id
    assert "InvalidEvent" in aside.data["reason"]
    assert aside.data["event"] == broken["event"] and aside.data["quarantined_at"]
    assert Outbox(store).pending() == []
    assert store.get("outbox-keys", key_doc_id("entitlement-1")) is None
    relay.close()


def test_an_entry_the_bus_refuses_is_moved_aside_but_an_outage_keeps_everything(
    store_backend: StoreBackend,
) -> None:
    store = store_backend.make("enrollment")
    for n in (1, 2, 3):
        add(store, n, "k")
    bus = RecordingBus()
    relay = OutboxRelay(store, bus)

    bus.refuse = {1: BusUnavailable("Pub/Sub is down")}
    down = relay.relay_once()
    assert (down.published, down.quarantined, len(down.errors), down.deferred) == (0, 0, 1, 3)
    assert len(Outbox(store).pending()) == 3

    bus.refuse = {2: PublishRejected("InvalidArgument: attribute too long")}
    up = relay.relay_once()
    assert (up.published, up.quarantined, up.errors) == (2, 1, [])
    assert bus.numbers() == [1, 3]
    assert "attribute too long" in Outbox(store).quarantined()[0].data["reason"]
    relay.close()


def test_store_transactions_allow_a_read_after_a_write(store_backend: StoreBackend) -> None:
    """What ``Outbox.add`` relies on inside a caller's transaction, on both stores."""
    store = store_backend.make("ingest")
    store.set("counters", "c", {"n": 1})

    def work(tx) -> int:
        tx.set("things", "t", {"x": 1})
        return tx.get("counters", "c")["n"]

    assert store.transaction(work) == 1
    assert store.get("things", "t") == {"x": 1}
