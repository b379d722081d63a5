"""One contract for every ``MessageBus`` adapter: the embedded SQLite bus and Pub/Sub (on its emulator).

Waits poll with deadlines; the few "nothing more arrives" checks watch for a short quiet period.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from waiting import wait_for

from coursebridge.events import Event, InvalidEvent, WireMessage, new_event
from coursebridge.events.diagnostics import DIAGNOSTIC_PING
from coursebridge.ports import BusUnavailable, Delivery, MessageBus, PermanentFailure
from coursebridge.topology import Subscription, Topology

if TYPE_CHECKING:
    from conftest import BusBackend

PING = DIAGNOSTIC_PING.type
TOPIC = "pings"
ALPHA = "alpha.pings"
BETA = "beta.pings"
REASON_ATTRIBUTE = "coursebridge-dead-letter-reason"
WAIT = 15.0
QUIET = 1.0

pytestmark = pytest.mark.timeout(60)


def topology(*subscriptions: str, ordered: bool = True, max_attempts: int = 5) -> Topology:
    return Topology(
        topics=(TOPIC,),
        subscriptions=tuple(
            Subscription(
                name=name,
                topic=TOPIC,
                ordered=ordered,
                ack_deadline_seconds=10,
                max_delivery_attempts=max_attempts,
                min_backoff_seconds=0.1,
                max_backoff_seconds=0.5,
            )
            for name in subscriptions or (ALPHA,)
        ),
    )


def hold(subscription: str) -> str:
    return f"{subscription}.dead-letter.hold"


def ping(n: int, note: str | None = None, **envelope: object) -> Event:
    data: dict[str, object] = {"n": n}
    if note is not None:
        data["note"] = note
    if "time" not in envelope:  # the wire carries milliseconds; keep events comparable after a roundtrip
        now = datetime.now(UTC)
        envelope["time"] = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return new_event(PING, data, source="tests/contract", **envelope)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Call:
    event: Event
    delivery: Delivery
    outcome: str  # "ok" or the class name of what the handler raised


class Recorder:
    """A handler that records every call; ``behaviour(event, delivery)`` may raise to fail it."""

    def __init__(self, behaviour: Callable[[Event, Delivery], None] | None = None) -> None:
        self.behaviour = behaviour
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event, delivery: Delivery) -> None:
        try:
            if self.behaviour is not None:
                self.behaviour(event, delivery)
        except BaseException as error:
            self._record(Call(event, delivery, type(error).__name__))
            raise
        self._record(Call(event, delivery, "ok"))

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def numbers(self, outcome: str | None = None) -> list[int | None]:
        return [c.event.data.get("n") for c in self.snapshot() if outcome is None or c.outcome == outcome]

    def wait_for(self, count: int, outcome: str | None = "ok", timeout: float = WAIT) -> list[Call]:
        wait_for(
            lambda: len(self.numbers(outcome)) >= count,
            f"{count} handler call(s) with outcome {outcome} (saw {self.numbers(None)})",
            timeout,
        )
        return self.snapshot()

    def assert_quiet(self, seconds: float = QUIET) -> None:
        """No further call arrives for ``seconds`` (a redelivery would come much sooner)."""
        before = len(self.snapshot())
        time.sleep(seconds)
        after = self.snapshot()
        assert len(after) == before, f"unexpected extra deliveries: {[c.event.data for c in after[before:]]}"


def held_messages(backend: BusBackend, bus: MessageBus, subscription: str, count: int) -> list[WireMessage]:
    """Raw messages (attributes included) waiting on ``subscription``; backend specific, test only."""
    found: list[WireMessage] = []
    if backend.kind == "gcp":
        from google.api_core.exceptions import DeadlineExceeded
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        path = subscriber.subscription_path(backend.project, subscription)
        try:

            def pulled() -> bool:
                try:
                    response = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=2)
                except DeadlineExceeded:
                    return False
                for received in response.received_messages:
                    message = received.message
                    found.append(WireMessage(bytes(message.data), dict(message.attributes)))
                if response.received_messages:
                    subscriber.acknowledge(
                        request={
                            "subscription": path,
                            "ack_ids": [r.ack_id for r in response.received_messages],
                        }
                    )
                return len(found) >= count

            wait_for(pulled, f"{count} message(s) on {subscription}", WAIT)
        finally:
            subscriber.close()
        return found

    path = bus._db.path  # type: ignore[attr-defined]

    def rows() -> bool:
        with sqlite3.connect(path) as connection:
            result = connection.execute(
                "SELECT m.data, m.attributes FROM deliveries d JOIN messages m ON m.seq = d.seq "
                "WHERE d.subscription = ? ORDER BY d.seq",
                (subscription,),
            ).fetchall()
        found[:] = [WireMessage(bytes(data), json.loads(attributes)) for data, attributes in result]
        return len(found) >= count

    wait_for(rows, f"{count} message(s) on {subscription}", WAIT)
    return found


def publish_raw(backend: BusBackend, bus: MessageBus, topic: str, message: WireMessage) -> None:
    """Publish bytes and attributes that did not go through ``MessageBus.publish`` (a foreign producer)."""
    if backend.kind == "gcp":
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        publisher.publish(
            publisher.topic_path(backend.project, topic), message.data, **message.attributes
        ).result(timeout=10)
        publisher.stop()
        return
    with bus._db.write() as connection:  # type: ignore[attr-defined]
        bus._insert(connection, topic, uuid.uuid4().hex, None, message)  # type: ignore[attr-defined]


# --- tests ------------------------------------------------------------------------------------------------


def test_roundtrip_preserves_every_envelope_attribute_and_the_data(bus_backend: BusBackend) -> None:
    bus = bus_backend.make()
    bus.provision(topology())
    recorder = Recorder()
    runner = bus.subscribe(ALPHA, recorder)
    sent = ping(
        7,
        "Olá, José — ✓ 100%",
        correlation_id="corr-123",
        subject="purchase/HP123",
        time=datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC),
    )

    message_id = bus.publish(TOPIC, sent, ordering_key="purchase-HP123")

    (call,) = recorder.wait_for(1)
    assert call.event == sent
    assert call.event.to_wire() == sent.to_wire()
    assert call.delivery == Delivery(ALPHA, message_id, 1, "purchase-HP123")
    recorder.assert_quiet()  # acked: not delivered again
    runner.stop()


def test_message_without_ordering_key_reports_none(bus_backend: BusBackend) -> None:
    bus = bus_backend.make()
    bus.provision(topology(ordered=False))
    recorder = Recorder()
    bus.subscribe(ALPHA, recorder)

    bus.publish(TOPIC, ping(1))

    (call,) = recorder.wait_for(1)
    assert call.delivery.ordering_key is None
    assert call.delivery.attempt == 1


def test_failed_handler_gets_the_message_again_with_a_higher_attempt(bus_backend: BusBackend) -> None:
    def fail_twice(event: Event, delivery: Delivery) -> None:
        if delivery.attempt < 3:
            raise RuntimeError("TalentLMS timed out")

    bus = bus_backend.make()
    bus.provision(topology())
    recorder = Recorder(fail_twice)
    bus.subscribe(ALPHA, recorder)
    sent = ping(1)

    bus.publish(TOPIC, sent, ordering_key="k")

    calls = recorder.wait_for(1)
    assert [c.delivery.attempt for c in calls] == [1, 2, 3]
    assert [c.outcome for c in calls] == ["RuntimeError", "RuntimeError", "ok"]
    assert all(c.event == sent for c in calls)
    assert len({c.delivery.message_id for c in calls}) == 1
    recorder.assert_quiet()  # the successful delivery was acked


def test_message_goes_to_the_dead_letter_topic_after_max_delivery_attempts(bus_backend: BusBackend) -> None:
    def always_fail(event: Event, delivery: Delivery) -> None:
        raise RuntimeError("still broken")

    bus = bus_backend.make()
    bus.provision(topology(max_attempts=5))
    failing = Recorder(always_fail)
    bus.subscribe(ALPHA, failing)
    dead = Recorder()
    bus.subscribe(hold(ALPHA), dead)
    sent = ping(1)

    bus.publish(TOPIC, sent, ordering_key="poison")

    (dead_call,) = dead.wait_for(1)
    assert dead_call.event == sent
    assert [c.delivery.attempt for c in failing.snapshot()] == [1, 2, 3, 4, 5]
    failing.assert_quiet()
    # The poison message no longer blocks its ordering key.
    failing.behaviour = None
    bus.publish(TOPIC, ping(2), ordering_key="poison")
    assert failing.wait_for(1)[-1].event.data == {"n": 2}


def test_permanent_failure_is_dead_lettered_at_once_with_the_reason(bus_backend: BusBackend) -> None:
    def refuse(event: Event, delivery: Delivery) -> None:
        raise PermanentFailure("offer 42 is not mapped to any course")

    bus = bus_backend.make()
    bus.provision(topology())
    recorder = Recorder(refuse)
    bus.subscribe(ALPHA, recorder)
    sent = ping(1, "x")

    bus.publish(TOPIC, sent, ordering_key="k")

    (held,) = held_messages(bus_backend, bus, hold(ALPHA), 1)
    assert held.data == sent.to_wire().data
    assert Event.from_wire(held) == sent
    for name, value in sent.to_wire().attributes.items():
        assert held.attributes[name] == value
    assert "offer 42 is not mapped to any course" in held.attributes[REASON_ATTRIBUTE]
    assert len(held.attributes[REASON_ATTRIBUTE]) <= 1000
    recorder.assert_quiet()
    assert [c.delivery.attempt for c in recorder.snapshot()] == [1]


def test_dead_letter_reason_is_truncated(bus_backend: BusBackend) -> None:
    def refuse(event: Event, delivery: Delivery) -> None:
        raise PermanentFailure("é" * 3000)

    bus = bus_backend.make()
    bus.provision(topology())
    bus.subscribe(ALPHA, Recorder(refuse))

    bus.publish(TOPIC, ping(1))

    (held,) = held_messages(bus_backend, bus, hold(ALPHA), 1)
    reason = held.attributes[REASON_ATTRIBUTE]
    assert 0 < len(reason) <= 1000
    assert set(reason) <= {"é"}


def test_a_message_that_is_not_a_valid_event_is_dead_lettered(bus_backend: BusBackend) -> None:
    bus = bus_backend.make()
    bus.provision(topology())
    recorder = Recorder()
    bus.subscribe(ALPHA, recorder)
    broken = ping(1).to_wire()
    not_json = WireMessage(b"{not json", broken.attributes)
    breaks_contract = WireMessage(b'{"n":"one"}', broken.attributes)

    publish_raw(bus_backend, bus, TOPIC, not_json)
    publish_raw(bus_backend, bus, TOPIC, breaks_contract)

    held = held_messages(bus_backend, bus, hold(ALPHA), 2)
    assert sorted(m.data for m in held) == sorted([not_json.data, breaks_contract.data])
    assert all(m.attributes[REASON_ATTRIBUTE] for m in held)
    assert recorder.snapshot() == []


def test_an_unknown_event_type_reaches_the_handler(bus_backend: BusBackend) -> None:
    """A newer producer's type is not an error: the consumer gets it (and its dispatcher ignores it)."""
    bus = bus_backend.make()
    bus.provision(topology())
    recorder = Recorder()
    bus.subscribe(ALPHA, recorder)
    future = Event(
        type="coursebridge.diagnostic.pong.v9",
        source="tests/contract",
        data={"anything": [1, 2]},
        correlation_id="c-1",
        time=datetime(2026, 1, 1, tzinfo=UTC),
    )

    publish_raw(bus_backend, bus, TOPIC, future.to_wire())

    assert recorder.wait_for(1)[0].event == future


def test_one_ordering_key_is_handed_over_in_publish_order_even_across_a_retry(
    bus_backend: BusBackend,
) -> None:
    def fail_first_once(event: Event, delivery: Delivery) -> None:
        if event.data["n"] == 1 and delivery.attempt == 1:
            raise RuntimeError("transient")

    bus = bus_backend.make()
    bus.provision(topology())
    recorder = Recorder(fail_first_once)
    bus.subscribe(ALPHA, recorder)

    for n in (1, 2, 3, 4):
        bus.publish(TOPIC, ping(n), ordering_key="purchase-1")

    recorder.wait_for(4)
    calls = recorder.snapshot()
    assert [(c.event.data["n"], c.outcome) for c in calls] == [
        (1, "RuntimeError"),
        (1, "ok"),
        (2, "ok"),
        (3, "ok"),
        (4, "ok"),
    ]
    assert [c.delivery.ordering_key for c in calls] == ["purchase-1"] * 5


def test_messages_held_behind_a_failing_one_keep_their_first_attempt(bus_backend: BusBackend) -> None:
    """Attempts count handler runs: waiting behind a failing message of the key is not an attempt."""
    first_done = threading.Event()

    def fail_first_three_times(event: Event, delivery: Delivery) -> None:
        if event.data["n"] == 1:
            if delivery.attempt <= 3:
                raise RuntimeError("TalentLMS is down")
            first_done.set()
        else:
            assert first_done.is_set(), "a later message of the key overtook the failing one"

    bus = bus_backend.make()
    bus.provision(topology(max_attempts=5))
    recorder = Recorder(fail_first_three_times)
    bus.subscribe(ALPHA, recorder)

    for n in (1, 2, 3):
        bus.publish(TOPIC, ping(n), ordering_key="refund-1")

    recorder.wait_for(3)
    recorder.assert_quiet()
    calls = recorder.snapshot()
    assert [(c.event.data["n"], c.delivery.attempt, c.outcome) for c in calls] == [
        (1, 1, "RuntimeError"),
        (1, 2, "RuntimeError"),
        (1, 3, "RuntimeError"),
        (1, 4, "ok"),
        (2, 1, "ok"),
        (3, 1, "ok"),
    ]


def test_later_messages_of_a_dead_lettered_key_run_and_are_not_dead_lettered(bus_backend: BusBackend) -> None:
    """Only the message whose own handler failed every attempt is dead-lettered, never the ones behind it."""

    def poison_first(event: Event, delivery: Delivery) -> None:
        if event.data["n"] == 1:
            raise RuntimeError("course 7 is gone")

    bus = bus_backend.make()
    bus.provision(topology(max_attempts=5))  # Pub/Sub's minimum
    recorder = Recorder(poison_first)
    bus.subscribe(ALPHA, recorder)
    dead = Recorder()
    bus.subscribe(hold(ALPHA), dead)

    for n in (1, 2, 3):
        bus.publish(TOPIC, ping(n), ordering_key="refund-2")

    recorder.wait_for(2)
    dead.wait_for(1)
    recorder.assert_quiet()
    dead.assert_quiet()
    assert [(c.event.data["n"], c.delivery.attempt, c.outcome) for c in recorder.snapshot()] == [
        (1, 1, "RuntimeError"),
        (1, 2, "RuntimeError"),
        (1, 3, "RuntimeError"),
        (1, 4, "RuntimeError"),
        (1, 5, "RuntimeError"),
        (2, 1, "ok"),
        (3, 1, "ok"),
    ]
    assert dead.numbers() == [1]


def test_different_ordering_keys_do_not_wait_for_each_other(bus_backend: BusBackend) -> None:
    second_key_done = threading.Event()

    def behaviour(event: Event, delivery: Delivery) -> None:
        if delivery.ordering_key == "slow":
            assert second_key_done.wait(WAIT), "key 'fast' was held back behind key 'slow'"
        elif event.data["n"] == 21:
            second_key_done.set()

    bus = bus_backend.make()
    bus.provision(topology())
    recorder = Recorder(behaviour)
    bus.subscribe(ALPHA, recorder, max_in_flight=4)

    bus.publish(TOPIC, ping(10), ordering_key="slow")
    bus.publish(TOPIC, ping(11), ordering_key="slow")
    bus.publish(TOPIC, ping(20), ordering_key="fast")
    bus.publish(TOPIC, ping(21), ordering_key="fast")

    recorder.wait_for(4)
    finished = recorder.numbers("ok")
    assert finished.index(21) < finished.index(10)
    assert [n for n in finished if n < 20] == [10, 11]
    assert [n for n in finished if n >= 20] == [20, 21]


def test_stop_waits_for_the_handler_in_flight_and_then_delivers_nothing(bus_backend: BusBackend) -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def slow(event: Event, delivery: Delivery) -> None:
        started.set()
        assert release.wait(WAIT)
        time.sleep(0.2)
        finished.set()

    bus = bus_backend.make()
    bus.provision(topology())
    recorder = Recorder(slow)
    runner = bus.subscribe(ALPHA, recorder)
    bus.publish(TOPIC, ping(1), ordering_key="a")
    assert started.wait(WAIT)
    assert runner.running()

    stopped = threading.Event()
    stopper = threading.Thread(target=lambda: (runner.stop(timeout=WAIT), stopped.set()))
    stopper.start()
    time.sleep(0.3)
    assert not stopped.is_set(), "stop() returned while a handler was still running"
    release.set()
    stopper.join(WAIT)
    assert stopped.is_set()
    assert finished.is_set(), "stop() returned before the handler in flight finished"
    assert not runner.running()
    runner.stop()  # a second stop is harmless

    bus.publish(TOPIC, ping(2), ordering_key="b")
    recorder.assert_quiet()
    assert recorder.numbers() == [1]

    if bus_backend.kind == "gcp":
        # The Pub/Sub emulator (0.8.x) never notices that a cancelled StreamingPull is gone (it fails on the
        # client's RST_STREAM), keeps routing messages to it and redelivers them only after the stream's
        # ack deadline: the check below would take 10-20 s there. Real Pub/Sub drops the stream at once.
        return
    # Nothing was lost: a new subscriber gets the message published after the stop, and only that one.
    again = Recorder()
    bus_backend.make().subscribe(ALPHA, again)
    again.wait_for(1)
    again.assert_quiet()
    assert again.numbers() == [2]


def test_every_subscription_of_a_topic_gets_its_own_copy(bus_backend: BusBackend) -> None:
    bus = bus_backend.make()
    bus.provision(topology(ALPHA, BETA))
    alpha, beta = Recorder(), Recorder()
    bus.subscribe(ALPHA, alpha)
    bus.subscribe(BETA, beta)

    sent = ping(1)
    bus.publish(TOPIC, sent)

    assert alpha.wait_for(1)[0].event == sent
    assert beta.wait_for(1)[0].event == sent
    assert alpha.snapshot()[0].delivery.subscription == ALPHA
    assert beta.snapshot()[0].delivery.subscription == BETA


def test_separate_bus_instances_talk_to_each_other(bus_backend: BusBackend) -> None:
    producer, consumer = bus_backend.make(), bus_backend.make()
    producer.provision(topology())
    recorder = Recorder()
    consumer.subscribe(ALPHA, recorder)

    producer.publish(TOPIC, ping(1))

    assert recorder.wait_for(1)[0].event.data == {"n": 1}


def test_publishing_an_invalid_event_raises_invalid_event(bus_backend: BusBackend) -> None:
    bus = bus_backend.make()
    bus.provision(topology())
    good = ping(1)

    with pytest.raises(InvalidEvent):
        bus.publish(TOPIC, good.with_data({"n": "one"}))
    with pytest.raises(InvalidEvent):
        bus.publish(
            TOPIC, Event(type="coursebridge.nobody.knows.v1", source="t", data={}, correlation_id="c")
        )


def test_publishing_to_a_missing_topic_raises_bus_unavailable(bus_backend: BusBackend) -> None:
    bus = bus_backend.make()
    bus.provision(topology())

    with pytest.raises(BusUnavailable):
        bus.publish("no-such-topic", ping(1))


def test_provision_is_idempotent_and_check_passes(bus_backend: BusBackend) -> None:
    bus = bus_backend.make()
    bus.provision(topology(ALPHA, BETA))
    bus.provision(topology(ALPHA, BETA))
    bus.check()


@pytest.mark.emulator
@pytest.mark.timeout(90)
def test_pubsub_publish_fails_fast_while_the_emulator_is_down_and_recovers(
    pubsub_emulator, gcp_project
) -> None:
    """What the outbox relay relies on: a bounded ``BusUnavailable``, then the same bus works again."""
    from coursebridge.adapters.pubsub_bus import PubSubBus

    if not getattr(pubsub_emulator, "can_restart", False):
        pytest.skip("this Pub/Sub emulator cannot be restarted by tests")
    bus = PubSubBus(gcp_project, publish_timeout=2.0)
    try:
        bus.provision(topology())
        bus.publish(TOPIC, ping(1), ordering_key="k")

        pubsub_emulator.stop()
        started = time.monotonic()
        with pytest.raises(BusUnavailable):
            bus.publish(TOPIC, ping(2), ordering_key="k")
        assert time.monotonic() - started < 8.0
        with pytest.raises(BusUnavailable):
            bus.check()

        pubsub_emulator.restart()  # same port, but every topic is gone
        bus.provision(topology())
        recorder = Recorder()
        bus.subscribe(ALPHA, recorder)
        wait_for(lambda: _publishes(bus, ping(3), "k"), "publishing after the restart", WAIT)
        assert recorder.wait_for(1)[0].event.data == {"n": 3}
        bus.check()
    finally:
        bus.close()


def _publishes(bus: MessageBus, event: Event, key: str) -> bool:
    try:
        bus.publish(TOPIC, event, ordering_key=key)
    except BusUnavailable:
        return False
    return True


# --- Pub/Sub only ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bus_backend", [pytest.param("gcp", marks=pytest.mark.emulator)], indirect=True)
def test_a_subscriber_comes_back_after_its_subscription_was_recreated(bus_backend: BusBackend) -> None:
    """A stream that gave up (its subscription deleted and re-created, as an emulator restart or an
    operator's mistake does) is opened again by itself instead of leaving the worker deaf."""
    bus = bus_backend.make()
    bus.provision(topology(ALPHA))
    got: list[int] = []
    lock = threading.Lock()

    def handler(event: Event, _delivery: Delivery) -> None:
        with lock:
            got.append(event.data["n"])

    runner = bus.subscribe(ALPHA, handler)
    try:
        bus.publish(TOPIC, ping(1), ordering_key="k")
        wait_for(lambda: got == [1], "the first message", 30)

        bus._subscriber.delete_subscription(subscription=bus.subscription_path(ALPHA))  # type: ignore[attr-defined]
        wait_for(lambda: not runner.running(), "the stream to end", 30)
        bus.provision(topology(ALPHA))
        bus.publish(TOPIC, ping(2), ordering_key="k")

        wait_for(lambda: 2 in got, "the message after the subscription came back", 60)
        assert runner.running()
    finally:
        runner.stop(10)
