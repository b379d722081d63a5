"""Time between services, as a property through both services' service layers (embedded stores).

Random payment histories are generated with an *independent* oracle of what the payments say at the end.
The subscription service handles each payment after a random processing delay, with sweeps at random
times (some on a pod whose clock runs days ahead); the enrollment service then receives every payment and
every access event the subscription service published, in a random order, some twice. Whatever the
delays, sweep times and delivery order, enrollment's final desired courses must equal the oracle's answer:
a renewal paid before the grace deadline but processed after the sweep keeps the student enrolled, a
fixed-term sale seen before its product's terms still ends, and a fast clock's premature expiry is undone.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coursebridge.adapters.sqlite_store import SqliteStore
from coursebridge.events.envelope import format_time
from subscription.service_layer.accesses import OUTBOX, handle_catalogue, handle_payment, sweep
from subscription.testing import catalogue_data, day, payment_data

pytest.importorskip("enrollment.domain.access")
from enrollment.domain.access import AccessSource
from enrollment.domain.desired import desired
from enrollment.domain.ids import access_doc_id
from enrollment.domain.mapping import ProductMapping
from enrollment.domain.signals import access_signal, payment_signal
from enrollment.service_layer.intake import Intake
from enrollment.service_layer.repository import ACCESSES

GRACE = 7  # the subscription service's default grace days
CYCLE = 30
SUB_PRODUCT, TERM_PRODUCT = "4711", "4712"
MAPPINGS = {
    SUB_PRODUCT: ProductMapping(SUB_PRODUCT, ("7",)),
    TERM_PRODUCT: ProductMapping(TERM_PRODUCT, ("8",)),
}
EMAIL = "ana.souza@example.com"
H = 1 / 24  # one hour, in days: every time is on the hour grid


def ts(d: float) -> str:
    return format_time(day(d))


@dataclass
class Payment:
    kind: str
    at: float  # business time (days)
    kw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    payments: list[Payment]
    expected_until: float | None  # access while the clock is before this (None: never; inf: always)
    end: float = 0.0
    processing: list[float] = field(default_factory=list)  # the subscription service's, per payment
    sweeps: list[tuple[float, float]] = field(default_factory=list)  # (when it ran, the clock it read)
    catalogue_at: float | None = None  # fixed term: when the product's terms reach the subscription service
    access_days: int | None = None

    def expected(self) -> bool:
        return self.expected_until is not None and self.end < self.expected_until


# --- the oracle: what the payments say ------------------------------------------------------------------


@st.composite
def subscription_histories(draw: st.DrawFn) -> Scenario:
    """A monthly subscription: each cycle paid on time, late within the grace period, late after it, or
    never; optionally a cancellation or a refund. The oracle follows the documented rules directly."""
    sub = {"code": "SUB-1", "product": SUB_PRODUCT, "email": EMAIL}
    payments = [
        Payment("purchase_approved", 0, {**sub, "transaction": "HP0", "recurrence": 1, "next": CYCLE})
    ]
    until: float | None = CYCLE + GRACE  # the safety net: paid-through date plus grace with no renewal
    last_paid_at, paid_through = 0.0, float(CYCLE)
    for k in range(1, draw(st.integers(0, 3)) + 1):
        due = k * CYCLE
        outcome = draw(st.sampled_from(["on_time", "late_in_grace", "late_after_grace", "unpaid"]))
        if outcome == "on_time":
            paid_at = due + draw(st.integers(0, 12)) * H
        else:
            payments.append(Payment("purchase_delayed", due, {**sub, "transaction": f"HP{k}"}))
            if outcome == "unpaid":
                until = due + GRACE
                break
            hours = draw(
                st.integers(1, GRACE * 24 - 1) if outcome == "late_in_grace" else st.integers(169, 480)
            )
            paid_at = due + hours * H
        payments.append(
            Payment(
                "purchase_approved",
                paid_at,
                {**sub, "transaction": f"HP{k}", "recurrence": k + 1, "next": due + CYCLE},
            )
        )
        last_paid_at, paid_through = paid_at, due + CYCLE
        until = paid_through + GRACE
    else:
        if draw(st.booleans()):
            cancelled_at = last_paid_at + draw(st.integers(1, int((paid_through - last_paid_at) / H) - 1)) * H
            payments.append(Payment("subscription_cancellation", cancelled_at, {**sub, "next": paid_through}))
            until = paid_through
    if draw(st.integers(0, 4)) == 0:
        refund_at = draw(st.integers(1, 40 * 24)) * H
        payments.append(Payment("purchase_refunded", refund_at, {**sub, "transaction": "HP0"}))
        until = None
    return draw(_timing(Scenario(payments, until)))


@st.composite
def fixed_term_sales(draw: st.DrawFn) -> Scenario:
    """A one-off sale of a product with ``access_days``, whose catalogue event may arrive long after it
    (a sale parked for want of a mapping): access until approval + access_days, unless refunded."""
    access_days = draw(st.integers(1, 40))
    approved_at = draw(st.integers(0, 5 * 24)) * H
    sale = {"code": None, "product": TERM_PRODUCT, "transaction": "HP9", "email": EMAIL}
    payments = [Payment("purchase_approved", approved_at, sale)]
    if draw(st.booleans()):
        payments.append(Payment("purchase_complete", approved_at + 7, sale))
    until: float | None = approved_at + access_days
    if draw(st.integers(0, 4)) == 0:
        payments.append(Payment("purchase_refunded", approved_at + draw(st.integers(1, 72)) * H, sale))
        until = None
    scenario = draw(_timing(Scenario(payments, until)))
    scenario.catalogue_at = draw(st.integers(0, 80 * 24)) * H
    scenario.access_days = access_days
    scenario.end = max(scenario.end, scenario.catalogue_at)
    return scenario


@st.composite
def _timing(draw: st.DrawFn, scenario: Scenario) -> Scenario:
    """Processing delays (up to 15 days), sweeps at random times, some on a pod whose clock runs days
    ahead, and the end of the run (every delivery done, one last sweep by an honest clock)."""
    scenario.processing = [p.at + draw(st.integers(0, 15 * 24)) * H for p in scenario.payments]
    last = max(scenario.processing)
    scenario.end = last + draw(st.integers(0, 40 * 24)) * H
    for _ in range(draw(st.integers(0, 6))):
        ran = draw(st.integers(0, int(scenario.end / H))) * H
        ahead = draw(st.integers(1, 40)) if draw(st.integers(0, 5)) == 0 else 0  # a fast clock, days
        scenario.sweeps.append((ran, ran + ahead))
    return scenario


# --- the two services -------------------------------------------------------------------------------------


def run_both(scenario: Scenario, shuffle: random.Random, directory: Path) -> set[str]:
    """Subscription service in time order, then enrollment in a random order with duplicates; returns
    enrollment's final desired courses for the student."""
    subscription_store = SqliteStore("subscription", directory / "subscription.sqlite3")
    enrollment_store = SqliteStore("enrollment", directory / "enrollment.sqlite3")
    try:
        payment_events = []
        work: list[tuple[float, int, Any]] = []
        for i, (payment, processed) in enumerate(zip(scenario.payments, scenario.processing, strict=True)):
            kw = dict(payment.kw)
            if "next" in kw:
                kw["next_charge_at"] = ts(kw.pop("next"))
            data = payment_data(payment.kind, ts(payment.at), event_id=f"hotmart-{i}", **kw)
            payment_events.append((f"pay-{i}", data))
            work.append((processed, 1, ("payment", data)))
        for ran, clock in scenario.sweeps:
            work.append((ran, 2, ("sweep", clock)))
        if scenario.catalogue_at is not None:
            terms = catalogue_data(TERM_PRODUCT, access_days=scenario.access_days)
            work.append((scenario.catalogue_at, 0, ("catalogue", terms)))
        for when, _, (action, value) in sorted(work, key=lambda w: (w[0], w[1])):
            if action == "payment":
                handle_payment(subscription_store, value, now=day(when))
            elif action == "sweep":
                sweep(subscription_store, day(value))
            else:
                handle_catalogue(subscription_store, value, now=day(when))
        sweep(subscription_store, day(scenario.end))

        staged = [doc.data["event"] for doc in subscription_store.query(OUTBOX, order_by="sequence")]
        signals = [payment_signal(event_id, data) for event_id, data in payment_events]
        signals += [access_signal(e["type"], e["id"], e["data"]) for e in staged]
        deliveries = [s for s in signals if s is not None]
        deliveries += [shuffle.choice(deliveries) for _ in range(shuffle.randint(0, 3))]
        shuffle.shuffle(deliveries)
        intake = Intake(enrollment_store, clock=lambda: ts(scenario.end))
        for signal in deliveries:
            intake.apply(signal)
        sources = []
        for access_id in {s.access_id for s in deliveries}:
            doc = enrollment_store.get(ACCESSES, access_doc_id(access_id))
            sources.append(AccessSource.from_json({**doc, "access_id": access_id}))
        return set(desired(sources, MAPPINGS).course_ids)
    finally:
        subscription_store.close()
        enrollment_store.close()


PROPERTY = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@PROPERTY
@given(subscription_histories(), st.randoms(use_true_random=False))
def test_final_subscription_access_is_what_the_payments_say(scenario: Scenario, shuffle: random.Random):
    with tempfile.TemporaryDirectory() as directory:
        courses = run_both(scenario, shuffle, Path(directory))
    assert courses == ({"7"} if scenario.expected() else set()), scenario


@PROPERTY
@given(fixed_term_sales(), st.randoms(use_true_random=False))
def test_final_fixed_term_access_is_what_the_payments_say_whenever_the_terms_arrive(
    scenario: Scenario, shuffle: random.Random
):
    with tempfile.TemporaryDirectory() as directory:
        courses = run_both(scenario, shuffle, Path(directory))
    assert courses == ({"8"} if scenario.expected() else set()), scenario


def test_the_late_renewal_case_explicitly():
    """Paid on day 36 (grace ends on day 37), processed on day 38 after the day-37 sweep."""
    sub = {"code": "SUB-1", "product": SUB_PRODUCT, "email": EMAIL}
    scenario = Scenario(
        [
            Payment("purchase_approved", 0, {**sub, "transaction": "HP0", "recurrence": 1, "next": 30}),
            Payment("purchase_delayed", 30, {**sub, "transaction": "HP1"}),
            Payment("purchase_approved", 36, {**sub, "transaction": "HP1", "recurrence": 2, "next": 60}),
        ],
        expected_until=60 + GRACE,
        end=40,
        processing=[0, 30, 38],
        sweeps=[(37, 37)],
    )
    for seed in range(5):
        with tempfile.TemporaryDirectory() as directory:
            assert run_both(scenario, random.Random(seed), Path(directory)) == {"7"}
