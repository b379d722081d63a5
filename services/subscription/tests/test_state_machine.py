"""The access state machine (pure): every transition, and order independence under Hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coursebridge.events.access import ACCESS_EXPIRED, ACCESS_RESTORED, ACCESS_SUSPENDED, PLAN_CHANGED
from coursebridge.events.envelope import format_time
from subscription.domain.access import (
    ACTIVE,
    APPROVAL,
    CANCELLATION,
    CANCELLED,
    DELAY,
    EXPIRED,
    GRANTING,
    PAID_THROUGH_KINDS,
    PAST_DUE,
    PENDING,
    REVOKED,
    SUSPENDED,
    Access,
    PaymentFact,
    ProductTerms,
    access_id_for,
    advance,
    apply_payment,
    change_data,
    new_access,
)
from subscription.testing import payment_data

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ts(d: float) -> str:
    return format_time(T0 + timedelta(days=d))


def at(d: float) -> datetime:
    return T0 + timedelta(days=d)


def fact(kind: str, d: float, event_id: str | None = None, **kw) -> PaymentFact:
    if "next" in kw:
        kw["next_charge_at"] = ts(kw.pop("next"))
    return PaymentFact.from_event_data(payment_data(kind, ts(d), event_id=event_id, **kw))


def run(facts, now: float, terms: ProductTerms | None = None, access: Access | None = None):
    """Apply ``facts`` in the given order at clock ``now``; returns (access, emitted change types)."""
    emitted = []
    for f in facts:
        if access is None:
            access = new_access(access_id_for(f, terms), f, terms)
        outcome = apply_payment(access, f, terms, at(now))
        emitted += [c.type for c in outcome.changes]
    return access, emitted


def sweep(access: Access, now: float) -> list[str]:
    return [c.type for c in advance(access, at(now)).changes]


# --- transitions, one by one ------------------------------------------------------------------------------


def test_first_approval_activates_without_an_event():
    access, emitted = run([fact("purchase_approved", 0, next=30, recurrence=1)], now=0)
    assert (access.state, access.paid_through, access.plan_id, emitted) == (ACTIVE, ts(30), "101", [])
    assert access.access_id == "sub:SUB-1:4711"


def test_delay_starts_the_grace_period_and_the_sweep_suspends_when_it_ends():
    access, emitted = run([fact("purchase_approved", 0, next=30), fact("purchase_delayed", 30)], now=30)
    assert (access.state, access.grace_until, access.next_deadline, emitted) == (PAST_DUE, ts(37), ts(37), [])
    assert sweep(access, 36.9) == []
    assert sweep(access, 37) == [ACCESS_SUSPENDED]
    assert access.state == SUSPENDED and access.next_deadline is None
    assert access.history[-1]["reason"] == "payment overdue beyond the 7-day grace period"
    assert access.history[-1]["at"] == ts(37)
    assert sweep(access, 40) == []  # idempotent


def test_overdue_status_on_any_event_counts_as_a_delay():
    access, _ = run(
        [
            fact("purchase_approved", 0),
            fact("update_subscription_charge_date", 31, subscription_status="overdue"),
        ],
        now=31,
    )
    assert access.state == PAST_DUE and access.grace_until == ts(38)


def test_grace_days_come_from_the_catalogue_copy_and_a_default():
    terms = ProductTerms("4711", grace_days=3)
    access, _ = run([fact("purchase_approved", 0), fact("purchase_delayed", 30)], now=30, terms=terms)
    assert access.grace_until == ts(33)
    f = fact("purchase_delayed", 30)
    other = new_access(access_id_for(f, None), f, None)
    apply_payment(other, f, None, at(30), default_grace_days=10)
    assert other.grace_until == ts(40)


def test_repeated_delay_notices_do_not_extend_the_grace_period():
    access, _ = run(
        [fact("purchase_approved", 0), fact("purchase_delayed", 30), fact("purchase_delayed", 33)], now=33
    )
    assert access.grace_until == ts(37)


def test_next_approval_restores_a_suspended_access():
    access, _ = run([fact("purchase_approved", 0, next=30), fact("purchase_delayed", 30)], now=30)
    sweep(access, 38)
    _, emitted = run(
        [fact("purchase_approved", 39, next=69, recurrence=2, transaction="HP2")], 39, access=access
    )
    assert emitted == [ACCESS_RESTORED]
    assert (access.state, access.paid_through, access.transaction) == (ACTIVE, ts(69), "HP2")
    assert access.history[-1]["reason"] == "renewal approved (recurrence 2)"


def test_payment_within_grace_clears_past_due_silently():
    access, _ = run([fact("purchase_approved", 0), fact("purchase_delayed", 30)], now=30)
    _, emitted = run([fact("purchase_approved", 32, recurrence=2)], 32, access=access)
    assert (access.state, access.next_deadline, emitted) == (ACTIVE, None, [])
    assert sweep(access, 50) == []


def test_cancellation_keeps_access_until_the_paid_through_date():
    access, emitted = run(
        [fact("purchase_approved", 0, next=30), fact("subscription_cancellation", 10, next=30)], now=10
    )
    assert (access.state, access.ends_at, access.next_deadline, emitted) == (CANCELLED, ts(30), ts(30), [])
    assert sweep(access, 29) == []
    assert sweep(access, 30) == [ACCESS_EXPIRED]
    assert access.history[-1]["reason"] == "cancelled; paid-through date reached"


def test_cancellation_with_a_past_paid_through_date_expires_on_the_next_evaluation():
    access, emitted = run(
        [fact("purchase_approved", 0, next=30), fact("subscription_cancellation", 40, next=30)], now=40
    )
    # applied 40 days on, the approval alone is already past its paid-through date and grace (safety net)
    assert (access.state, emitted) == (EXPIRED, [ACCESS_SUSPENDED, ACCESS_EXPIRED])


def test_cancelled_status_counts_as_cancellation():
    access, _ = run(
        [
            fact("purchase_approved", 0, next=30),
            fact("update_subscription_charge_date", 5, next=30, subscription_status="canceled_by_customer"),
        ],
        now=5,
    )
    assert access.state == CANCELLED


def test_cancellation_without_a_paid_through_date_keeps_access_through_the_grace_period():
    f = fact("subscription_cancellation", 10)
    access, emitted = run([f], now=10)
    assert (access.state, access.ends_at, emitted) == (CANCELLED, ts(17), [])


def test_charge_date_update_moves_the_paid_through_date():
    access, _ = run(
        [
            fact("purchase_approved", 0, next=30),
            fact("subscription_cancellation", 10, next=30),
            fact("update_subscription_charge_date", 12, next=45),
        ],
        now=35,
    )
    assert (access.state, access.paid_through) == (CANCELLED, ts(45))


def test_charge_date_moved_after_expiry_restores_the_access():
    access, _ = run(
        [fact("purchase_approved", 0, next=30), fact("subscription_cancellation", 10, next=30)], 31
    )
    assert access.state == EXPIRED
    _, emitted = run([fact("update_subscription_charge_date", 32, next=60)], 32, access=access)
    assert (access.state, emitted) == (CANCELLED, [ACCESS_RESTORED])


def test_switch_plan_records_the_new_plan_and_emits_plan_changed():
    access, _ = run([fact("purchase_approved", 0, next=30)], now=0)
    f = fact(
        "switch_plan",
        5,
        next=30,
        plan=("102", "Premium"),
        new_plan=("102", "Premium"),
        previous_plan=("101", "M"),
    )
    outcome = apply_payment(access, f, None, at(5))
    assert [c.type for c in outcome.changes] == [PLAN_CHANGED]
    data = change_data(access, outcome.changes[0])
    assert (data["plan_id"], data["previous_plan_id"], data["state"]) == ("102", "101", ACTIVE)
    assert apply_payment(access, f, None, at(6)).duplicate


def test_an_older_plan_does_not_undo_a_newer_switch():
    switch = fact("switch_plan", 5, plan=("102", "P"), new_plan=("102", "P"), previous_plan=("101", "M"))
    access, emitted = run([fact("purchase_approved", 0), switch, fact("purchase_approved", 3)], now=6)
    assert access.plan_id == "102" and emitted == [PLAN_CHANGED]


def test_refunds_and_chargebacks_are_recorded_and_emit_nothing():
    access, emitted = run(
        [fact("purchase_approved", 0, transaction="HP1"), fact("purchase_refunded", 3, transaction="HP1")],
        now=3,
    )
    assert (access.state, emitted) == (ACTIVE, [])
    assert access.compensations[0]["kind"] == "purchase_refunded"


def test_older_events_cannot_undo_newer_ones():
    access, emitted = run(
        [fact("purchase_approved", 40, next=70, recurrence=2), fact("purchase_delayed", 31)], now=41
    )
    assert (access.state, emitted) == (ACTIVE, [])
    access, _ = run([fact("subscription_cancellation", 20, next=30), fact("purchase_approved", 10)], now=21)
    assert access.state == CANCELLED


def test_duplicates_are_no_ops():
    delay = fact("purchase_delayed", 30, event_id="d-1")
    access, _ = run([fact("purchase_approved", 0), delay], now=38)
    assert access.state == SUSPENDED
    doc = access.to_doc()
    outcome = apply_payment(access, delay, None, at(39))
    assert outcome.duplicate and outcome.changes == [] and access.to_doc() == doc


def test_a_clock_lagging_within_the_skew_never_undoes_a_time_based_transition():
    access, _ = run([fact("purchase_approved", 0), fact("purchase_delayed", 30)], now=37)
    assert access.state == SUSPENDED
    lagging = at(37) - timedelta(seconds=90)  # within the default 2-minute skew
    outcome = advance(access, lagging)
    assert outcome.changes == [] and outcome.clock_ahead is None and access.state == SUSPENDED
    assert access.evaluated_at == ts(37)


def test_a_premature_expiry_from_a_clock_running_ahead_is_undone_and_redone_in_time():
    access, _ = run(
        [fact("purchase_approved", 0, next=30), fact("subscription_cancellation", 10, next=30)], now=10
    )
    assert access.state == CANCELLED
    fast = advance(access, at(45)).changes  # one pod's clock runs 35 days ahead
    assert [c.type for c in fast] == [ACCESS_EXPIRED] and fast[0].version == 1
    honest = advance(access, at(11))
    assert honest.clock_ahead == ts(45)
    assert [(c.type, c.state, c.version) for c in honest.changes] == [(ACCESS_RESTORED, CANCELLED, 2)]
    assert honest.changes[0].reason.startswith("re-evaluated: an earlier evaluation ran on a clock ahead")
    assert access.evaluated_at == ts(11) and access.next_deadline == ts(30)
    assert [(c.type, c.version) for c in advance(access, at(30)).changes] == [(ACCESS_EXPIRED, 3)]
    assert advance(access, at(30)).changes == []


def test_the_skew_bound_is_configurable():
    access, _ = run([fact("purchase_approved", 0), fact("purchase_delayed", 30)], now=37)
    assert advance(access, at(36), max_skew=timedelta(days=2)).changes == []
    assert [c.type for c in advance(access, at(36), max_skew=timedelta(0)).changes] == [ACCESS_RESTORED]


def test_every_published_change_has_a_higher_version_than_the_one_before():
    access, emitted = run(
        [
            fact("purchase_approved", 0, next=30),
            fact("purchase_delayed", 30),
            fact("switch_plan", 31, new_plan=("102", "Pro")),
        ],
        now=31,
    )
    assert emitted == [PLAN_CHANGED]
    changes = advance(access, at(37)).changes
    changes += apply_payment(
        access, fact("purchase_approved", 36, next=66, recurrence=2), None, at(40)
    ).changes
    assert [(c.type, c.version) for c in changes] == [(ACCESS_SUSPENDED, 2), (ACCESS_RESTORED, 3)]
    assert [change_data(access, c)["version"] for c in changes] == [2, 3]
    assert changes[1].effective_at == ts(36) < changes[0].effective_at == ts(37)  # business time: older


def test_fixed_term_purchase_expires_access_days_after_approval():
    terms = ProductTerms("4712", access_days=30)
    approval = fact("purchase_approved", 0, code=None, product="4712", transaction="HP9")
    assert access_id_for(approval, terms) == "tx:HP9"
    assert access_id_for(approval, ProductTerms("4712")) is None  # lifetime: not tracked here
    access, emitted = run(
        [approval, fact("purchase_complete", 20, code=None, product="4712", transaction="HP9")], 20, terms
    )
    assert (access.state, access.ends_at, access.paid_through, emitted) == (ACTIVE, ts(30), ts(30), [])
    assert sweep(access, 30) == [ACCESS_EXPIRED]
    assert access.history[-1]["reason"] == "fixed term of 30 days reached"


def test_events_carry_email_and_last_transaction():
    access, _ = run([fact("purchase_approved", 0, transaction="HP1"), fact("purchase_delayed", 30)], now=30)
    change = advance(access, at(40)).changes[0]
    data = change_data(access, change)
    assert data["email"] == "ana.souza@example.com" and data["transaction"] == "HP1"
    assert data["effective_at"] == ts(37) and data["state"] == SUSPENDED


def test_the_document_round_trips():
    access, _ = run([fact("purchase_approved", 0, next=30), fact("purchase_delayed", 30)], now=30)
    assert Access.from_doc(access.to_doc()) == access


# --- order independence -------------------------------------------------------------------------------


def model(facts: list[PaymentFact], now: float, grace: int = 7) -> dict:
    """A second, sequential formulation: sort by event time, fold, then look at the clock."""
    unique = {f.event_id: f for f in facts}.values()
    paid = cancelled = False
    overdue_since = cancelled_at = paid_through = plan = None
    for f in sorted(unique, key=lambda f: (f.occurred_at, f.event_id)):
        if f.signal == APPROVAL:
            paid, cancelled, overdue_since = True, False, None
        elif f.signal == DELAY and overdue_since is None:
            overdue_since = f.occurred_at
        elif f.signal == CANCELLATION:
            cancelled, cancelled_at = True, f.occurred_at
        if f.kind in PAID_THROUGH_KINDS and f.next_charge_at:
            paid_through = f.next_charge_at
        if f.plan_id:
            plan = f.plan_id
    clock = ts(now)

    def plus(moment: str, days: int) -> str:
        return format_time(datetime.fromisoformat(moment.replace("Z", "+00:00")) + timedelta(days=days))

    if cancelled:
        end = paid_through or plus(cancelled_at, grace)
        state = EXPIRED if clock >= end else CANCELLED
    elif overdue_since:
        state = SUSPENDED if clock >= plus(overdue_since, grace) else PAST_DUE
    elif paid and paid_through and clock >= plus(paid_through, grace):
        state = SUSPENDED  # the safety net: paid-through date and grace passed with no renewal
    else:
        state = ACTIVE if paid else PENDING
    return {"state": state, "paid_through": paid_through, "plan": plan}


KINDS = [
    "purchase_approved",
    "purchase_complete",
    "purchase_delayed",
    "subscription_cancellation",
    "update_subscription_charge_date",
    "switch_plan",
    "purchase_refunded",
]


@st.composite
def histories(draw):
    n = draw(st.integers(1, 8))
    facts = []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        d = draw(st.integers(0, 12)) * 5  # coarse days: ties happen
        nxt = draw(st.one_of(st.none(), st.integers(0, 90)))
        plan = draw(st.sampled_from([("101", "M"), ("102", "P")]))
        kw = {"plan": plan, "new_plan": plan, "previous_plan": ("100", "X")}
        if nxt is not None:
            kw["next"] = nxt
        facts.append(fact(kind, d, event_id=f"e{i:02d}", recurrence=draw(st.integers(1, 3)), **kw))
    return facts


@st.composite
def arrivals(draw):
    """A history, and one arrival order of it with duplicates and sweeps (at times <= now) mixed in."""
    facts = draw(histories())
    now = draw(st.integers(0, 100))
    order = list(draw(st.permutations(facts)))
    for f in draw(st.lists(st.sampled_from(facts), max_size=4)):
        order.insert(draw(st.integers(0, len(order))), f)
    for sweep_at in draw(st.lists(st.integers(0, now), max_size=3)):
        order.insert(draw(st.integers(0, len(order))), sweep_at)
    return facts, order, now


@given(arrivals())
@settings(max_examples=300, deadline=None)
def test_any_arrival_order_with_duplicates_and_sweeps_reaches_the_models_state(case):
    facts, order, now = case
    access = None
    emitted = []
    for item in order:
        if isinstance(item, int):
            if access is not None:
                emitted += [(c.type, access.state) for c in advance(access, at(item)).changes]
            continue
        if access is None:
            access = new_access(access_id_for(item, None), item, None)
        emitted += [
            (c.type, access.state) for c in apply_payment(access, item, None, at(item_day(item))).changes
        ]
    emitted += [(c.type, access.state) for c in advance(access, at(max(now, 60))).changes]
    assert access.emitted == len(emitted)  # one version per published change: 1, 2, ... n
    expected = model(facts, max(now, 60))
    assert access.state == expected["state"]
    assert access.paid_through == expected["paid_through"]
    assert access.plan_id == expected["plan"]
    # every emitted event agrees with the state it announces, and revocations alternate with restorations
    granted = True
    for change_type, state in emitted:
        if change_type in (ACCESS_SUSPENDED, ACCESS_EXPIRED):
            assert state in REVOKED
            granted = False
        elif change_type == ACCESS_RESTORED:
            assert state in GRANTING and not granted
            granted = True
        else:
            assert change_type == PLAN_CHANGED and state in GRANTING


def item_day(f: PaymentFact) -> float:
    """Events are processed at (or after) their own time: the clock never runs behind the event."""
    return (datetime.fromisoformat(f.occurred_at.replace("Z", "+00:00")) - T0).total_seconds() / 86400


@given(histories(), st.integers(0, 100))
@settings(max_examples=200, deadline=None)
def test_final_state_does_not_depend_on_order_when_applied_at_one_clock(facts, now):
    forward, _ = run(facts, now)
    backward, _ = run(list(reversed(facts)) + facts[:2], now)
    assert forward.state == backward.state == model(facts, now)["state"]
    assert (forward.paid_through, forward.plan_id, forward.grace_until, forward.ends_at) == (
        backward.paid_through,
        backward.plan_id,
        backward.grace_until,
        backward.ends_at,
    )


@given(histories(), st.integers(0, 100), st.integers(0, 30))
@settings(max_examples=200, deadline=None)
def test_the_sweep_is_idempotent(facts, now, later):
    access, _ = run(facts, now)
    first = advance(access, at(now + later)).changes
    snapshot = access.to_doc()
    assert advance(access, at(now + later)).changes == []
    assert access.to_doc() == snapshot
    assert len(first) <= 1


@pytest.mark.parametrize("kind", ["club_first_access", "purchase_billet_printed", "unrecognised"])
def test_events_that_say_nothing_about_access_are_not_tracked(kind):
    f = PaymentFact.from_event_data(payment_data(kind, ts(0)))
    assert access_id_for(f, None) is None
