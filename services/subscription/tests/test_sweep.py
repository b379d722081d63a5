"""The service layer on the embedded store with an injected clock: payments, catalogue copy, the sweep."""

from __future__ import annotations

import threading

from coursebridge.events.access import ACCESS_EXPIRED, ACCESS_RESTORED, ACCESS_SUSPENDED
from coursebridge.events.envelope import format_time
from coursebridge.outbox import OutboxRelay
from subscription.service_layer.accesses import (
    OUTBOX,
    PRODUCTS,
    get_access,
    handle_catalogue,
    handle_payment,
    relay_all,
    subscriber_accesses,
    sweep,
)
from subscription.testing import catalogue_data, day, payment_data


def ts(d: float) -> str:
    return format_time(day(d))


def pay(store, kind, d, **kw):
    if "next" in kw:
        kw["next_charge_at"] = ts(kw.pop("next"))
    return handle_payment(store, payment_data(kind, ts(d), **kw), now=day(d))


def outbox_types(store) -> list[str]:
    return [doc.data["event"]["type"] for doc in store.query(OUTBOX, order_by="sequence")]


def test_grace_end_is_swept_into_a_suspension_and_staged_in_the_outbox(store):
    pay(store, "purchase_approved", 0, next=30, transaction="HP1")
    pay(store, "purchase_delayed", 30, transaction="HP2")
    assert sweep(store, day(36)).changed == 0
    report = sweep(store, day(37))
    assert report.to_json() == {
        "now": ts(37),
        "examined": 1,
        "changed": 1,
        "counts": {"suspended": 1},
        "access_ids": {"suspended": ["sub:SUB-1:4711"]},
        "reevaluated": 0,
    }
    assert outbox_types(store) == [ACCESS_SUSPENDED]
    event = store.query(OUTBOX)[0].data["event"]
    assert event["data"]["transaction"] == "HP1" and event["subject"] == "sub:SUB-1:4711"
    assert sweep(store, day(38)).changed == 0
    pay(store, "purchase_approved", 39, next=69, recurrence=2, transaction="HP3")
    assert outbox_types(store) == [ACCESS_SUSPENDED, ACCESS_RESTORED]


def test_paid_through_reached_after_cancellation_expires(store):
    pay(store, "purchase_approved", 0, next=30)
    events = pay(store, "subscription_cancellation", 10, next=30)
    assert events == [] and get_access(store, "sub:SUB-1:4711").state == "cancelled"
    assert sweep(store, day(29)).changed == 0
    assert sweep(store, day(30)).counts == {"expired": 1}
    assert outbox_types(store) == [ACCESS_EXPIRED]


def test_fixed_term_from_the_catalogue_copy(store):
    assert handle_catalogue(store, catalogue_data("4712", access_days=30, revision=2))
    assert not handle_catalogue(store, catalogue_data("4712", access_days=90, revision=1))  # older: ignored
    assert store.get(PRODUCTS, "4712")["access_days"] == 30
    pay(store, "purchase_approved", 0, code=None, product="4712", transaction="HP9")
    pay(store, "purchase_approved", 0, code=None, product="4713", transaction="HP8")  # lifetime: untracked
    report = sweep(store, day(31))
    assert report.access_ids == {"expired": ["tx:HP9"]}
    assert get_access(store, "tx:HP8") is None


def test_catalogue_grace_days_apply(store):
    handle_catalogue(store, catalogue_data("4711", grace_days=2))
    pay(store, "purchase_approved", 0, next=30)
    pay(store, "purchase_delayed", 30)
    assert sweep(store, day(32)).counts == {"suspended": 1}


def test_sweep_catches_up_after_downtime(store):
    for i in range(5):
        pay(store, "purchase_approved", 0, code=f"SUB-{i}", next=30)
        pay(store, "purchase_delayed", 30 + i, code=f"SUB-{i}")
    pay(store, "purchase_approved", 0, code="SUB-C", next=20)
    pay(store, "subscription_cancellation", 5, code="SUB-C", next=20)
    pay(store, "purchase_approved", 0, code="SUB-OK", next=120)
    report = sweep(store, day(100), batch_size=2)  # several batches
    assert report.counts == {"suspended": 5, "expired": 1}
    assert report.changed == 6
    states = {a["access_id"]: a for a in subscriber_accesses(store, "SUB-3")}
    assert states["sub:SUB-3:4711"]["history"][-1]["at"] == ts(40)  # effective when the grace ended
    assert get_access(store, "sub:SUB-OK:4711").state == "active"
    assert sweep(store, day(101)).changed == 0


def test_duplicate_payment_events_change_nothing(store):
    data = payment_data("purchase_delayed", ts(30))
    pay(store, "purchase_approved", 0, next=30)
    handle_payment(store, data, now=day(40))
    before = store.get("accesses", "sub:SUB-1:4711")
    assert handle_payment(store, data, now=day(41)) == []
    assert store.get("accesses", "sub:SUB-1:4711") == before
    assert outbox_types(store) == [ACCESS_SUSPENDED]


def test_two_overlapping_sweeps_emit_each_transition_once(store, platform):
    from coursebridge.backends import open_store

    for i in range(20):
        pay(store, "purchase_approved", 0, code=f"SUB-{i}", next=30)
        pay(store, "purchase_delayed", 30, code=f"SUB-{i}")
    stores = [open_store(platform, "subscription") for _ in range(2)]  # two "processes"
    reports = []
    barrier = threading.Barrier(2)

    def run(s):
        barrier.wait()
        reports.append(sweep(s, day(40)))

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    assert sum(r.changed for r in reports) == 20
    assert outbox_types(store) == [ACCESS_SUSPENDED] * 20
    assert len({doc.data["event"]["id"] for doc in store.query(OUTBOX)}) == 20


def test_relay_publishes_staged_events_once(store, bus):
    pay(store, "purchase_approved", 0, next=30)
    pay(store, "purchase_delayed", 30)
    sweep(store, day(40))
    received = []
    runner = bus.subscribe("analytics.subscriptions", lambda event, delivery: received.append(event))
    relay = OutboxRelay(store, bus, kind=OUTBOX, service="subscription")
    assert relay_all(relay) == 1
    relay.close()
    assert store.query(OUTBOX) == []
    import time

    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.stop()
    assert [e.type for e in received] == [ACCESS_SUSPENDED]
    assert received[0].data["state"] == "suspended"


def test_safety_net_suspends_an_access_whose_renewal_never_arrived_and_a_late_renewal_restores_it(store):
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("coursebridge_subscription_safety_net_suspensions_total") or 0.0
    pay(store, "purchase_approved", 0, code="SUB-LOST", next=30)  # renewal and cancellation both lost
    assert sweep(store, day(36)).changed == 0  # within the grace after the paid-through date
    report = sweep(store, day(38))
    assert report.counts == {"suspended": 1}
    access = get_access(store, "sub:SUB-LOST:4711")
    assert access.state == "suspended"
    assert access.history[-1]["at"] == ts(37) and "safety net" in access.history[-1]["reason"]
    after = REGISTRY.get_sample_value("coursebridge_subscription_safety_net_suspensions_total")
    assert after == before + 1
    pay(store, "purchase_approved", 31, code="SUB-LOST", next=61, transaction="HP-RENEWAL")
    assert get_access(store, "sub:SUB-LOST:4711").state == "active"
    assert outbox_types(store)[-2:] == [ACCESS_SUSPENDED, ACCESS_RESTORED]
