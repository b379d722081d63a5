"""The service layer on the embedded store: one-off sales that arrive before their product's terms, versions
on published changes, and the sweep's repair of decisions taken by a clock running ahead."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coursebridge.events import CONTRACTS, new_event
from coursebridge.events.access import ACCESS_EXPIRED, ACCESS_RESTORED, ACCESS_SUSPENDED
from coursebridge.events.contracts import InvalidEvent
from coursebridge.events.envelope import format_time
from subscription.service_layer.accesses import (
    ACCESSES,
    AWAITING,
    OUTBOX,
    adopt_awaiting,
    get_access,
    handle_catalogue,
    handle_payment,
    sweep,
)
from subscription.testing import catalogue_data, day, payment_data


def ts(d: float) -> str:
    return format_time(day(d))


def pay(store, kind, d, *, now: float | None = None, **kw):
    if "next" in kw:
        kw["next_charge_at"] = ts(kw.pop("next"))
    return handle_payment(store, payment_data(kind, ts(d), **kw), now=day(d if now is None else now))


def sale(store, kind, d, *, now: float | None = None, transaction="HP9", product="4712", **kw):
    return pay(store, kind, d, now=now, code=None, product=product, transaction=transaction, **kw)


def staged(store) -> list[tuple[str, dict]]:
    docs = store.query(OUTBOX, order_by="sequence")
    return [(doc.data["event"]["type"], doc.data["event"]["data"]) for doc in docs]


# --- fixed-term sales seen before the terms --------------------------------------------------------------


def test_a_sale_seen_before_its_terms_gets_its_access_when_the_terms_arrive(store):
    assert sale(store, "purchase_approved", 0) == []
    assert get_access(store, "tx:HP9") is None and store.get(AWAITING, "tx:HP9") is not None
    handle_catalogue(store, catalogue_data("4712", access_days=30), now=day(10))
    access = get_access(store, "tx:HP9")
    assert (access.state, access.ends_at, access.term_start) == ("active", ts(30), ts(0))
    assert store.get(AWAITING, "tx:HP9") is None and staged(store) == []  # still within the term
    assert sweep(store, day(30)).access_ids == {"expired": ["tx:HP9"]}
    [(kind, data)] = staged(store)
    assert (kind, data["effective_at"], data["version"]) == (ACCESS_EXPIRED, ts(30), 1)


def test_a_parked_sale_whose_term_already_ended_expires_as_soon_as_the_terms_arrive(store):
    sale(store, "purchase_approved", 0)
    sale(store, "purchase_complete", 7)  # the warranty window ended; still before the terms
    handle_catalogue(store, catalogue_data("4712", access_days=30), now=day(45))
    [(kind, data)] = staged(store)
    assert (kind, data["state"], data["effective_at"], data["version"]) == (
        ACCESS_EXPIRED,
        "expired",
        ts(30),
        1,
    )
    assert data["access_id"] == "tx:HP9" and data["transaction"] == "HP9"


def test_a_lifetime_product_drops_the_kept_sales(store):
    sale(store, "purchase_approved", 0)
    handle_catalogue(store, catalogue_data("4712", access_days=None), now=day(1))
    assert store.get(AWAITING, "tx:HP9") is None and get_access(store, "tx:HP9") is None
    assert staged(store) == []


def test_subscriptions_never_wait_for_terms(store):
    pay(store, "purchase_approved", 0, next=30)
    assert store.query(AWAITING) == [] and get_access(store, "sub:SUB-1:4711").state == "active"


def test_the_terms_redelivered_after_a_crash_still_settle_the_waiting_sales(store):
    sale(store, "purchase_approved", 0)
    assert handle_catalogue(store, catalogue_data("4712", access_days=30))  # stored; crashed before settling
    assert get_access(store, "tx:HP9") is None
    assert not handle_catalogue(store, catalogue_data("4712", access_days=30), now=day(40))  # redelivery
    assert get_access(store, "tx:HP9").state == "expired"
    assert adopt_awaiting(store, "4712", day(41)) == {}  # nothing left: settled once


def test_a_payment_after_the_terms_picks_up_the_kept_facts(store):
    sale(store, "purchase_approved", 0, event_id="approval-1")
    sale(store, "purchase_refunded", 3)
    handle_catalogue(store, catalogue_data("4712", access_days=30))  # settling never ran
    sale(store, "purchase_complete", 7, now=8)
    access = get_access(store, "tx:HP9")
    assert (access.state, access.term_start) == ("active", ts(0))  # the term runs from the first approval
    assert [c["kind"] for c in access.compensations] == ["purchase_refunded"]
    assert store.get(AWAITING, "tx:HP9") is None
    # the kept fact redelivered later is a duplicate, not a second term
    sale(store, "purchase_approved", 0, now=9, event_id="approval-1")
    assert get_access(store, "tx:HP9").applied == access.applied


def test_kept_facts_are_deduplicated(store):
    data = payment_data("purchase_approved", ts(0), code=None, product="4712", transaction="HP9")
    handle_payment(store, data, now=day(0))
    handle_payment(store, data, now=day(1))
    assert len(store.get(AWAITING, "tx:HP9")["facts"]) == 1


# --- versions and a late renewal ------------------------------------------------------------------------


def test_a_renewal_paid_before_the_deadline_but_processed_after_the_sweep_restores_with_a_higher_version(
    store,
):
    pay(store, "purchase_approved", 0, next=30, transaction="HP1")
    pay(store, "purchase_delayed", 30, transaction="HP2")
    assert sweep(store, day(37)).counts == {"suspended": 1}
    pay(store, "purchase_approved", 36, now=38, next=66, recurrence=2, transaction="HP3")
    (k1, suspended), (k2, restored) = staged(store)
    assert (k1, k2) == (ACCESS_SUSPENDED, ACCESS_RESTORED)
    assert restored["effective_at"] < suspended["effective_at"]  # business times: the payment came first
    assert restored["version"] > suspended["version"]  # the later decision: it wins downstream


# --- clock skew -------------------------------------------------------------------------------------------


def test_the_sweep_undoes_a_premature_expiry_made_by_a_clock_running_ahead(store):
    pay(store, "purchase_approved", 0, next=30)
    pay(store, "subscription_cancellation", 10, next=30)
    assert sweep(store, day(45)).counts == {"expired": 1}  # one pod's clock is 35 days ahead
    report = sweep(store, day(11))  # an honest pod
    assert report.reevaluated == 1 and report.counts == {"cancelled": 1}
    assert [t for t, _ in staged(store)] == [ACCESS_EXPIRED, ACCESS_RESTORED]
    assert [d["version"] for _, d in staged(store)] == [1, 2]
    assert store.get(ACCESSES, "sub:SUB-1:4711")["evaluated_at"] == ts(11)
    assert sweep(store, day(12)).reevaluated == 0  # repaired once
    assert sweep(store, day(30)).counts == {"expired": 1}
    assert [d["version"] for _, d in staged(store)] == [1, 2, 3]


def test_a_clock_lagging_within_the_skew_does_not_reevaluate(store):
    pay(store, "purchase_approved", 0, next=30)
    pay(store, "purchase_delayed", 30)
    sweep(store, day(37))
    report = sweep(store, day(37) - timedelta(seconds=60))
    assert (report.reevaluated, report.changed) == (0, 0)
    assert get_access(store, "sub:SUB-1:4711").state == "suspended"


def test_a_payment_handled_after_a_fast_clock_decision_repairs_it(store):
    pay(store, "purchase_approved", 0, next=30)
    pay(store, "subscription_cancellation", 10, next=30)
    sweep(store, day(45))
    pay(store, "switch_plan", 12, now=12, new_plan=("102", "Pro"), previous_plan=("101", "Monthly"))
    access = get_access(store, "sub:SUB-1:4711")
    assert (access.state, access.plan_id, access.evaluated_at) == ("cancelled", "102", ts(12))
    assert [t for t, _ in staged(store)] == [ACCESS_EXPIRED, ACCESS_RESTORED]


# --- the contract -----------------------------------------------------------------------------------------


def test_version_is_an_optional_additive_field_of_the_access_contract():
    example = dict(CONTRACTS[ACCESS_SUSPENDED].example or {})
    assert example["version"] >= 1
    new_event(ACCESS_SUSPENDED, example, source="test")  # with it
    new_event(ACCESS_SUSPENDED, {k: v for k, v in example.items() if k != "version"}, source="test")  # older
    for bad in (0, -1, "3", 1.5):
        with pytest.raises(InvalidEvent, match="version"):
            new_event(ACCESS_SUSPENDED, {**example, "version": bad}, source="test")
