"""The subscription worker on both backends (embedded SQLite, and Google's emulators through the shared
fixtures): payment and catalogue events in, access events out on the ``subscriptions`` topic."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from waiting import wait_for

from coursebridge.config import PlatformSettings
from coursebridge.events.access import ACCESS_EXPIRED, ACCESS_RESTORED, ACCESS_SUSPENDED
from coursebridge.events.envelope import format_time
from coursebridge.topology import CATALOGUE, PAYMENTS, TOPOLOGY
from subscription.bootstrap import build_worker
from subscription.config import SubscriptionSettings
from subscription.service_layer.accesses import (
    AWAITING,
    PRODUCTS,
    get_access,
    handle_catalogue,
    handle_payment,
    sweep,
)
from subscription.testing import Clock, catalogue_data, catalogue_event, day, payment_data, payment_event

if TYPE_CHECKING:
    from conftest import BusBackend, StoreBackend

pytestmark = pytest.mark.timeout(120)
WAIT = 30.0


def ts(d: float) -> str:
    return format_time(day(d))


def test_payments_in_access_events_out(bus_backend: BusBackend, store_backend: StoreBackend, tmp_path):
    bus = bus_backend.make()
    bus.provision(TOPOLOGY)
    store = store_backend.make("subscription")
    clock = Clock(day(0))
    settings = SubscriptionSettings(
        platform=PlatformSettings(data_dir=tmp_path),
        sweep_interval_seconds=0.2,
        relay_poll_interval=0.05,
    )
    worker = build_worker(settings, store=store, bus=bus, clock=clock)
    received = []
    collector = bus_backend.make().subscribe(
        "enrollment.subscriptions", lambda event, delivery: received.append((event, delivery))
    )
    worker.start()
    try:
        bus.publish(CATALOGUE, catalogue_event(catalogue_data("4711", grace_days=3)), "product:4711")
        wait_for(lambda: store.get(PRODUCTS, "4711"), what="the catalogue copy")

        def publish(kind, d, **kw):
            data = payment_data(kind, ts(d), **kw)
            bus.publish(PAYMENTS, payment_event(data), data["ordering_key"])

        clock.now = day(30)
        publish("purchase_delayed", 30, transaction="HP2")  # out of order: the approval comes second
        publish("purchase_approved", 0, transaction="HP1", next_charge_at=ts(30), recurrence=1)
        wait_for(
            lambda: (a := get_access(store, "sub:SUB-1:4711")) and a.state == "past_due", what="past_due"
        )
        assert get_access(store, "sub:SUB-1:4711").grace_until == ts(33)

        clock.now = day(34)  # the worker's periodic sweep notices the grace period ended
        wait_for(lambda: len(received) >= 1, what="access_suspended")
        event, delivery = received[0]
        assert event.type == ACCESS_SUSPENDED
        assert delivery.ordering_key == "sub:SUB-1:4711"
        assert event.data["email"] == "ana.souza@example.com" and event.data["transaction"] == "HP1"

        clock.now = day(35)
        publish("purchase_approved", 35, transaction="HP3", next_charge_at=ts(65), recurrence=2)
        wait_for(lambda: len(received) >= 2, what="access_restored")
        assert received[1][0].type == ACCESS_RESTORED
        assert received[1][0].data["transaction"] == "HP3"

        publish("subscription_cancellation", 40, next_charge_at=ts(65))
        wait_for(lambda: get_access(store, "sub:SUB-1:4711").state == "cancelled", what="cancelled")
        time.sleep(0.5)
        assert len(received) == 2  # never revoked on the cancellation itself
        clock.now = day(66)
        wait_for(lambda: len(received) >= 3, what="access_expired")
        assert received[2][0].type == ACCESS_EXPIRED
        assert received[2][0].data["reason"] == "cancelled; paid-through date reached"
        time.sleep(0.5)
        assert [e.type for e, _ in received] == [ACCESS_SUSPENDED, ACCESS_RESTORED, ACCESS_EXPIRED]
        assert [e.data["version"] for e, _ in received] == [1, 2, 3]  # the order decisions were taken in
    finally:
        worker.stop(10)
        collector.stop(10)


def test_store_queries_of_the_time_guards(store_backend: StoreBackend):
    """On each store: a parked fixed-term sale is settled when its terms arrive (query by product), and
    the sweep finds and repairs an access last evaluated by a clock running ahead (range query)."""
    store = store_backend.make("subscription")
    sale = {"code": None, "product": "4798", "transaction": "HPT1"}
    handle_payment(store, payment_data("purchase_approved", ts(0), **sale), now=day(0))
    assert get_access(store, "tx:HPT1") is None and store.get(AWAITING, "tx:HPT1") is not None
    handle_catalogue(store, catalogue_data("4798", access_days=3), now=day(5))
    assert get_access(store, "tx:HPT1").state == "expired" and store.get(AWAITING, "tx:HPT1") is None

    handle_payment(store, payment_data("purchase_approved", ts(0), next_charge_at=ts(30)), now=day(0))
    handle_payment(
        store, payment_data("subscription_cancellation", ts(10), next_charge_at=ts(30)), now=day(10)
    )
    assert sweep(store, day(45)).counts == {"expired": 1}  # a pod whose clock runs 35 days ahead
    report = sweep(store, day(11))
    assert (report.reevaluated, report.counts) == (1, {"cancelled": 1})
    assert get_access(store, "sub:SUB-1:4711").state == "cancelled"
    assert sweep(store, day(11)).reevaluated == 0
