"""Platform faults on real adapters (SQLite, and Pub/Sub + Firestore on Google's emulators).

- a poison outbox entry: moved aside with its reason, the key's later entries and every other key flow,
  the relay never backs off for it;
- two relays started at once on one outbox: one publishes, the other stands by and takes over when the
  first stops; every event is published once and each key in order;
- a ``.v2`` event reaching a consumer that handles only ``.v1`` (a rolling upgrade, new producer first):
  never acknowledged unhandled, it holds its key, is parked on the dead-letter hold with the reason, and
  the upgraded consumer handles it from there.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_for

from coursebridge.events import Event, new_event
from coursebridge.events.diagnostics import DIAGNOSTIC_PING
from coursebridge.outbox import OUTBOX_RETRIES, Outbox, OutboxRelay
from coursebridge.ports import Delivery, DocumentStore, MessageBus
from coursebridge.runtime.consumer import EventDispatcher, UnknownEventVersion
from coursebridge.topology import Subscription, Topology

pytestmark = pytest.mark.timeout(120)

TOPIC = "pings"
SUB = "consumer.pings"
HOLD = f"{SUB}.dead-letter.hold"
PING_V1 = DIAGNOSTIC_PING.type
PING_V2 = "coursebridge.diagnostic.ping.v2"
WAIT = 30.0


def topology(max_attempts: int = 5) -> Topology:
    return Topology(
        topics=(TOPIC,),
        subscriptions=(
            Subscription(
                name=SUB,
                topic=TOPIC,
                ordered=True,
                ack_deadline_seconds=10,
                max_delivery_attempts=max_attempts,
                min_backoff_seconds=0.1,
                max_backoff_seconds=0.3,
            ),
        ),
    )


@dataclass
class Platform:
    kind: str
    make_store: Any
    make_bus: Any
    _closers: list[Any] = field(default_factory=list)

    def store(self, owner: str = "svc") -> DocumentStore:
        store = self.make_store(owner)
        self._closers.append(store)
        return store

    def bus(self) -> MessageBus:
        bus = self.make_bus()
        self._closers.append(bus)
        return bus

    def close(self) -> None:
        for thing in reversed(self._closers):
            try:
                thing.close()
            except Exception as error:  # teardown must not hide the test's own failure
                print(f"closing {thing!r} failed: {error!r}")


@pytest.fixture(params=["embedded", pytest.param("gcp", marks=pytest.mark.emulator)])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    if request.param == "embedded":
        from coursebridge.adapters.sqlite_bus import SqliteBus
        from coursebridge.adapters.sqlite_store import SqliteStore

        made = Platform(
            "embedded",
            lambda owner: SqliteStore(owner, tmp_path / "store.sqlite3"),
            lambda: SqliteBus(tmp_path / "bus.sqlite3", poll_interval=0.02),
        )
    else:
        request.getfixturevalue("pubsub_emulator")
        request.getfixturevalue("firestore_emulator")
        project = request.getfixturevalue("gcp_project")
        from coursebridge.adapters.firestore_store import FirestoreStore
        from coursebridge.adapters.pubsub_bus import PubSubBus

        made = Platform(
            "gcp", lambda owner: FirestoreStore(owner, project=project), lambda: PubSubBus(project)
        )
    yield made
    made.close()


class Received:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.attempts: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event, delivery: Delivery) -> None:
        with self._lock:
            self.events.append(event)
            self.attempts.append((event.type, delivery.attempt))

    def numbers(self, key: str | None = None) -> list[int]:
        with self._lock:
            return [e.data["n"] for e in self.events if key is None or e.subject == key]


def ping(n: int, key: str) -> Event:
    return new_event(PING_V1, {"n": n}, source="tests/faults", subject=key)


def add(store: DocumentStore, n: int, key: str) -> None:
    store.transaction(lambda tx: Outbox(store).add(tx, TOPIC, ping(n, key), key))


class CountingBus(MessageBus):
    """Passes publishes to a real bus and counts them (which relay published what)."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.count = 0

    def publish(self, topic: str, event: Event, ordering_key: str | None = None) -> str:
        message_id = self.bus.publish(topic, event, ordering_key)
        self.count += 1
        return message_id

    def subscribe(self, subscription, handler, *, max_in_flight=10):
        return self.bus.subscribe(subscription, handler, max_in_flight=max_in_flight)

    def provision(self, topology: Topology) -> None:
        self.bus.provision(topology)

    def check(self) -> None:
        self.bus.check()


def run_in_thread(relay: OutboxRelay, stop: threading.Event, **options: Any) -> threading.Thread:
    thread = threading.Thread(target=relay.run, args=(stop,), kwargs=options, daemon=True)
    thread.start()
    return thread


def test_a_poison_outbox_entry_is_moved_aside_and_everything_else_flows(platform: Platform) -> None:
    store, bus = platform.store("enrollment"), platform.bus()
    bus.provision(topology())
    received = Received()
    platform.bus().subscribe(SUB, received)
    for n in (1, 2, 3):
        add(store, n, "entitlement-1")
    add(store, 10, "entitlement-2")
    (poison,) = [d for d in Outbox(store).pending() if d.data["event"]["data"] == {"n": 2}]
    store.set("outbox", poison.id, {**poison.data, "event": {**poison.data["event"], "data": {"n": "two"}}})
    retries_before = OUTBOX_RETRIES.labels("enrollment")._value.get()
    relay, stop = OutboxRelay(store, bus, service="enrollment"), threading.Event()
    thread = run_in_thread(relay, stop, poll_interval=0.05)
    try:
        wait_for(lambda: len(received.numbers()) == 3, "the three sound events delivered", WAIT)
    finally:
        stop.set()
        thread.join(WAIT)
        relay.close()

    assert received.numbers("entitlement-1") == [1, 3]
    assert received.numbers("entitlement-2") == [10]
    (aside,) = Outbox(store).quarantined()
    assert aside.id == poison.id and "InvalidEvent" in aside.data["reason"]
    assert Outbox(store).pending() == []
    assert OUTBOX_RETRIES.labels("enrollment")._value.get() == retries_before  # no backoff for it


def test_two_relays_started_at_once_publish_each_entry_once_and_in_order(platform: Platform) -> None:
    keys = [f"purchase-{k}" for k in range(4)]
    writer = platform.store("ingest")
    platform.bus().provision(topology())
    received = Received()
    platform.bus().subscribe(SUB, received)
    for n in range(20):
        add(writer, n, keys[n % 4])
    buses = [CountingBus(platform.bus()), CountingBus(platform.bus())]
    relays = [OutboxRelay(platform.store("ingest"), b, service="ingest") for b in buses]
    stops = [threading.Event(), threading.Event()]
    start = threading.Barrier(2)

    def run(index: int) -> None:
        start.wait()
        relays[index].run(stops[index], poll_interval=0.05, lease_ttl=3.0, holder=f"relay-{index}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in (0, 1)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: set(received.numbers()) == set(range(20)), "20 events delivered", WAIT)
        assert sorted(b.count for b in buses) == [0, 20]  # one relayed, the other stood by
        holder = 0 if buses[0].count else 1
        stops[holder].set()  # the holder stops (a rolling update): the other takes over
        threads[holder].join(WAIT)
        for n in range(20, 24):
            add(writer, n, keys[n % 4])
        wait_for(lambda: set(received.numbers()) == set(range(24)), "4 more events after the takeover", WAIT)
        assert (buses[holder].count, buses[1 - holder].count) == (20, 4)
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(WAIT)
        for relay in relays:
            relay.close()

    # Each published once (above); delivered in order per key (a redelivery repeats a run of the key).
    for k, key in enumerate(keys):
        numbers = received.numbers(key)
        assert sorted(set(numbers)) == [n for n in range(24) if n % 4 == k]
        first_seen = sorted(set(numbers), key=numbers.index)
        assert first_seen == sorted(first_seen), numbers


def test_a_v2_event_reaching_a_v1_consumer_is_held_then_parked_never_lost(platform: Platform) -> None:
    bus = platform.bus()
    bus.provision(topology(max_attempts=5))
    handled = Received()
    v1_consumer = EventDispatcher("consumer", {PING_V1: handled})
    failures: list[tuple[str, int]] = []

    def consumer(event: Event, delivery: Delivery) -> None:
        try:
            v1_consumer(event, delivery)
        except UnknownEventVersion:
            failures.append((event.type, delivery.attempt))
            raise

    bus.subscribe(SUB, consumer)
    newer = Event(
        type=PING_V2,
        source="tests/faults",
        data={"n": 2, "currency": "BRL"},
        correlation_id="c-2",
        subject="access-1",
        id=str(uuid.uuid4()),
        time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    publish_raw(platform, bus, newer, "access-1")
    bus.publish(TOPIC, ping(3, "access-1"), ordering_key="access-1")

    wait_for(lambda: handled.numbers() == [3], "the v1 event after the parked v2 handled", WAIT)
    assert failures == [(PING_V2, attempt) for attempt in range(1, 6)]  # never acked unhandled
    assert handled.events[0].type == PING_V1  # and nothing of the v2 reached the v1 handler

    upgraded = Received()  # the consumer after its upgrade, as the replay command hands it the hold
    platform.bus().subscribe(HOLD, EventDispatcher("consumer", {PING_V1: upgraded, PING_V2: upgraded}))
    wait_for(lambda: [e.id for e in upgraded.events] == [newer.id], "the parked v2 event replayed", WAIT)
    assert upgraded.events[0].data == newer.data


def publish_raw(platform: Platform, bus: MessageBus, event: Event, key: str) -> None:
    """A newer producer's event: its type is unknown to this library, so ``publish`` would refuse it."""
    wire = event.to_wire()
    if platform.kind == "gcp":
        bus._publish_wire(bus.topic_path(TOPIC), wire, key)  # type: ignore[attr-defined]
        return
    with bus._db.write() as connection:  # type: ignore[attr-defined]
        bus._insert(connection, TOPIC, uuid.uuid4().hex, key, wire)  # type: ignore[attr-defined]
