"""The enrollment worker on both backends (embedded SQLite, and Google's emulators): subscribers that only
decide and queue, the dispatcher and the outbox relay under their leases, parked approvals granted once
mapped, and the dead-letter replay command, with an in-memory LMS."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import wait_for

from coursebridge.config import PlatformSettings
from coursebridge.deadletters import DEADLETTERS, deadletter_id
from coursebridge.events import Event
from coursebridge.events.catalogue import PRODUCT_MAPPED
from coursebridge.events.enrollments import ENROLLMENT_GRANTED, ENROLLMENT_REVOKED
from coursebridge.events.learning import LEARNING_COURSE_COMPLETED, LEARNING_SIGNED_IN
from coursebridge.ports import Delivery
from coursebridge.topology import PAYMENTS, TOPOLOGY
from enrollment.adapters.memory_lms import InMemoryLearningPlatform
from enrollment.config import EnrollmentSettings
from enrollment.domain.mapping import parse_mapping
from enrollment.entrypoints.replay import replay
from enrollment.service_layer.catalogue import Catalogue

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "enrollment" / "tests"))
from saga_support import BASE_TIME, payment_event

EMAIL = "ana.souza@example.com"
WAIT = 30.0
PAIRED = [
    pytest.param("embedded", "embedded", id="embedded"),
    pytest.param("gcp", "gcp", id="gcp", marks=pytest.mark.emulator),
]
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize(("bus_backend", "store_backend"), PAIRED, indirect=True),
]


class Stack:
    def __init__(self, bus_backend, store_backend, tmp_path: Path, *, learning_interval: float = 900) -> None:
        from enrollment.bootstrap import build_worker

        self.bus = bus_backend.make()
        self.bus.provision(TOPOLOGY)
        self.store = store_backend.make("enrollment")
        self.lms = InMemoryLearningPlatform()
        settings = EnrollmentSettings(
            platform=PlatformSettings(backend="embedded", data_dir=tmp_path, service_name="enrollment"),
            relay_poll_interval=0.05,
            lease_seconds=6,
            learning_interval=learning_interval,
        )
        self.worker = build_worker(settings, store=self.store, bus=self.bus, lms=self.lms)
        self.received: list[Event] = []
        self._lock = threading.Lock()
        self._listeners = [
            self.bus.subscribe("analytics.enrollments", self._record),
            self.bus.subscribe("subscription.catalogue", self._record),
            self.bus.subscribe("analytics.learning", self._record),
        ]

    def _record(self, event: Event, _delivery: Delivery) -> None:
        with self._lock:
            self.received.append(event)

    def events(self, event_type: str) -> list[Event]:
        with self._lock:
            return [e for e in self.received if e.type == event_type]

    def publish(self, event: Event, topic: str = PAYMENTS) -> None:
        self.bus.publish(topic, event, ordering_key=event.data.get("ordering_key"))

    def stop(self) -> None:
        self.worker.stop(timeout=10)
        for listener in self._listeners:
            listener.stop(10)


@pytest.fixture
def stack(bus_backend, store_backend, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(bus_backend, store_backend, tmp_path)
    stack.worker.start()
    yield stack
    stack.stop()


def test_approval_then_refund_through_the_worker(stack: Stack) -> None:
    Catalogue(stack.store).put(parse_mapping("4711", {"course_ids": ["7", "9"]}))
    wait_for(lambda: len(stack.events(PRODUCT_MAPPED)) == 1, "the catalogue event")

    approval = payment_event(transaction="HP1", second=0)
    stack.publish(approval)
    stack.publish(approval)  # a duplicate delivery changes nothing
    wait_for(lambda: stack.lms.enrolled(EMAIL) == {"7", "9"}, "enrollment in 7 and 9")
    wait_for(lambda: len(stack.events(ENROLLMENT_GRANTED)) == 2, "two granted events")

    stack.publish(payment_event("PURCHASE_REFUNDED", transaction="HP1", second=60))
    wait_for(lambda: stack.lms.enrolled(EMAIL) == set(), "removal from both courses")
    wait_for(lambda: len(stack.events(ENROLLMENT_REVOKED)) == 2, "two revoked events")
    assert {e.data["reason"] for e in stack.events(ENROLLMENT_REVOKED)} == {"purchase refunded"}
    assert stack.lms.calls["sign_up"] == 1
    assert stack.lms.calls["enroll"] == 2
    time.sleep(0.3)
    assert len(stack.events(ENROLLMENT_GRANTED)) == 2


def test_parked_approval_is_applied_once_the_product_is_mapped(stack: Stack) -> None:
    stack.publish(payment_event(transaction="HP5", product="4712"))
    wait_for(lambda: Catalogue(stack.store).parked() != [], "the approval to be parked")
    assert stack.lms.calls["enroll"] == 0 and stack.lms.calls["sign_up"] == 0
    Catalogue(stack.store).put(parse_mapping("4712", {"course_ids": ["11"]}))
    wait_for(lambda: stack.lms.enrolled(EMAIL) == {"11"}, "the parked approval to be applied")


def test_dead_letters_are_kept_by_the_service_and_replayed_once(stack: Stack) -> None:
    Catalogue(stack.store).put(parse_mapping("4711", {"course_ids": ["7"]}))
    dead = payment_event(transaction="HP9")
    no_email = {**dead.data, "buyer": {**dead.data["buyer"], "email": None}}
    poison = payment_event(transaction="HP10").with_data(no_email)
    # as the bus does after max attempts: the messages land on the subscription's dead-letter topic
    for event in (dead, poison):
        stack.bus.publish(
            "enrollment.payments.dead-letter",
            event,
            ordering_key=event.data["ordering_key"],
        )
    ids = [deadletter_id("enrollment.payments", e.id) for e in (dead, poison)]
    wait_for(
        lambda: all(stack.store.get(DEADLETTERS, i) for i in ids), "the worker's keeper to store both letters"
    )
    kept = stack.store.get(DEADLETTERS, ids[0])
    assert kept["status"] == "held" and kept["message"]["id"] == dead.id
    assert stack.lms.enrolled(EMAIL) == set()

    result = replay(stack.bus, stack.store, ("enrollment.payments",), idle_seconds=0.5)
    assert sorted(o.outcome for o in result.outcomes) == ["failed", "replayed"]
    wait_for(lambda: stack.lms.enrolled(EMAIL) == {"7"}, "the replayed approval to be applied")
    assert stack.store.get(DEADLETTERS, ids[0])["status"] == "replayed"
    poisoned = stack.store.get(DEADLETTERS, ids[1])
    assert poisoned["status"] == "held" and poisoned["reason"].startswith("replay failed")
    # a second run handles the poison once more and nothing else: no loop, no republishing
    again = replay(stack.bus, stack.store, ("enrollment.payments",), idle_seconds=0.5)
    assert [(o.id, o.outcome) for o in again.outcomes] == [(ids[1], "failed")]
    assert stack.store.get(DEADLETTERS, ids[1])["replays"] == 2


def test_learning_activity_is_read_from_the_timeline_and_published_once(
    bus_backend, store_backend, tmp_path: Path
) -> None:
    stack = Stack(bus_backend, store_backend, tmp_path, learning_interval=1)
    stack.worker.start()
    try:
        Catalogue(stack.store).put(parse_mapping("4711", {"course_ids": ["7"]}))
        stack.publish(payment_event(transaction="HP1", second=0))
        wait_for(lambda: stack.lms.enrolled(EMAIL) == {"7"}, "enrollment in 7")
        user = stack.lms.user_by_email(EMAIL)
        assert user is not None
        start = int(BASE_TIME.timestamp())
        stack.lms.sign_in(user.id, start + 60)
        stack.lms.complete(user.id, "7", start + 120)
        wait_for(
            lambda: (
                len(stack.events(LEARNING_SIGNED_IN)) == 1
                and len(stack.events(LEARNING_COURSE_COMPLETED)) == 1
            ),
            "a signed-in and a course-completed event",
        )
        time.sleep(2.5)  # more polls: nothing twice
    finally:
        stack.stop()

    assert len(stack.events(LEARNING_SIGNED_IN)) == 1 and len(stack.events(LEARNING_COURSE_COMPLETED)) == 1
    (completed,) = stack.events(LEARNING_COURSE_COMPLETED)
    assert completed.data["lms_user_id"] == user.id and completed.data["course_id"] == "7"
    assert [p["transaction"] for p in completed.data["purchases"]] == ["HP1"]
    assert stack.lms.calls["timeline"] >= 4  # several polls (2 calls each) found nothing more
