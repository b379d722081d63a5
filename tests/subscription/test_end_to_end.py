"""End to end with the enrollment service (embedded backend, in-memory LMS): the subscription service's
decisions reach the learning platform.

- cancellation, then the paid-through date passes -> sweep -> removed from the LMS;
- overdue beyond the grace period -> sweep -> removed; the next approval -> enrolled again.
"""

from __future__ import annotations

import time

import pytest
from waiting import wait_for

from coursebridge.adapters.sqlite_bus import SqliteBus
from coursebridge.adapters.sqlite_store import SqliteStore
from coursebridge.config import PlatformSettings
from coursebridge.events.envelope import format_time
from coursebridge.topology import PAYMENTS, TOPOLOGY
from subscription.bootstrap import build_worker
from subscription.config import SubscriptionSettings
from subscription.service_layer.accesses import PRODUCTS, get_access
from subscription.testing import Clock, day, payment_data, payment_event

enrollment_bootstrap = pytest.importorskip("enrollment.bootstrap")
from enrollment.adapters.memory_lms import InMemoryLearningPlatform  # noqa: E402
from enrollment.config import EnrollmentSettings  # noqa: E402
from enrollment.domain.mapping import ProductMapping  # noqa: E402
from enrollment.service_layer.catalogue import Catalogue  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def ts(d: float) -> str:
    return format_time(day(d))


def test_sweep_decisions_reach_the_lms(tmp_path):
    platform = PlatformSettings(data_dir=tmp_path)
    bus = SqliteBus(tmp_path / "bus.sqlite3", poll_interval=0.02, min_backoff=0.05, max_backoff=0.2)
    bus.provision(TOPOLOGY)
    enrollment_store = SqliteStore("enrollment", tmp_path / "enrollment.sqlite3")
    subscription_store = SqliteStore("subscription", tmp_path / "subscription.sqlite3")
    lms = InMemoryLearningPlatform()
    clock = Clock(day(0))
    enrollment = enrollment_bootstrap.build_worker(
        EnrollmentSettings(platform=platform, relay_poll_interval=0.05),
        store=enrollment_store,
        bus=bus,
        lms=lms,
    )
    subscription = build_worker(
        SubscriptionSettings(platform=platform, sweep_interval_seconds=0.2, relay_poll_interval=0.05),
        store=subscription_store,
        bus=SqliteBus(tmp_path / "bus.sqlite3", poll_interval=0.02, min_backoff=0.05, max_backoff=0.2),
        clock=clock,
    )
    enrollment.start()
    subscription.start()
    try:
        Catalogue(enrollment_store).put(ProductMapping(product_id="4711", course_ids=("7",), grace_days=3))
        wait_for(lambda: subscription_store.get(PRODUCTS, "4711"), "the catalogue event")

        def publish(kind, d, **kw):
            data = payment_data(kind, ts(d), **kw)
            bus.publish(PAYMENTS, payment_event(data), data["ordering_key"])

        cancelled, overdue = "carla@example.com", "bruno@example.com"
        publish(
            "purchase_approved", 0, code="SUB-C", email=cancelled, transaction="HPC1", next_charge_at=ts(30)
        )
        publish(
            "purchase_approved", 0, code="SUB-O", email=overdue, transaction="HPO1", next_charge_at=ts(30)
        )
        wait_for(lambda: lms.enrolled(cancelled) == {"7"} and lms.enrolled(overdue) == {"7"}, "enrollments")

        clock.now = day(30)
        publish("subscription_cancellation", 10, code="SUB-C", email=cancelled, next_charge_at=ts(31))
        publish("purchase_delayed", 30, code="SUB-O", email=overdue, transaction="HPO2")
        wait_for(
            lambda: (a := get_access(subscription_store, "sub:SUB-C:4711")) and a.state == "cancelled", "c"
        )
        wait_for(
            lambda: (a := get_access(subscription_store, "sub:SUB-O:4711")) and a.state == "past_due", "p"
        )
        time.sleep(0.5)
        assert lms.enrolled(cancelled) == {"7"} and lms.enrolled(overdue) == {"7"}  # nothing revoked yet

        clock.now = day(34)  # paid-through reached (31) and grace over (30 + 3): the worker's sweep acts
        wait_for(lambda: lms.enrolled(cancelled) == set(), "expiry to remove the cancelled student")
        wait_for(lambda: lms.enrolled(overdue) == set(), "suspension to remove the overdue student")

        clock.now = day(35)
        publish(
            "purchase_approved",
            35,
            code="SUB-O",
            email=overdue,
            transaction="HPO3",
            next_charge_at=ts(65),
            recurrence=2,
        )
        wait_for(lambda: lms.enrolled(overdue) == {"7"}, "the renewal to re-enroll")
        assert get_access(subscription_store, "sub:SUB-O:4711").state == "active"
        assert lms.enrolled(cancelled) == set()
    finally:
        subscription.stop(10)
        enrollment.stop(10)
        subscription_store.close()
        enrollment_store.close()
        bus.close()
