"""The access state machine: plain Python, no I/O; the clock is always passed in.

One *access* per Hotmart subscriber code x product (``sub:<code>:<product>``), plus fixed-term one-off
purchases (``tx:<transaction>``) of products whose catalogue entry has ``access_days``.

Order independence. Hotmart sends one subscription's events out of order and more than once, so an access
does not keep "the state after the last message". It keeps a few *registers*, each merged so that the
result does not depend on arrival order (every comparison is on ``(event time, event id)``, a total order):

- ``last_paid``: the newest approval (PURCHASE_APPROVED / PURCHASE_COMPLETE);
- ``delays``: overdue notices newer than ``last_paid`` (the earliest one starts the grace period);
- ``cancellation``: the newest cancellation (it wins over payments older than itself);
- ``paid_through``, ``plan``, ``email``, ``transaction``: last-writer-wins by event time;
- ``term_start`` (fixed term): the earliest approval.

The state is then a function of the registers and the clock (``evaluate``): active, past_due (grace
running), suspended (grace over), cancelled (paid through a future date), expired (paid-through date or
fixed term reached), and the safety net: an active subscription whose paid-through date plus grace
passed with no renewal is suspended (a renewal or a cancellation was lost), restored by a later renewal.
``apply_payment`` merges one payment fact and re-evaluates; ``advance`` (the sweep)
only re-evaluates with a later clock. A state change that changes course access yields one ``AccessChange``
(suspended, restored, expired) and a plan switch on a live access yields ``plan_changed``.

Time between services. Every change carries two things: ``effective_at``, the business time it takes
effect (a deadline, an approval time), for people and reports; and ``version``, the access's own change
counter kept in this service's store (1, 2, ...), never a clock. Enrollment lets the highest version
decide, so a restoration decided after a suspension wins even when its business time is older (a renewal
paid before the grace deadline but processed after the sweep).

Clock skew. A time-based transition is only as right as the clock that decided it. The clock of the last
evaluation is kept (``evaluated_at``) so that a slightly lagging pod never undoes a transition, but only
within ``max_skew``: an evaluation stamped further ahead than this clock plus ``max_skew`` came from a
clock running fast, and is re-evaluated now (a premature expiry is restored, with a higher version).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from coursebridge.events.access import ACCESS_EXPIRED, ACCESS_RESTORED, ACCESS_SUSPENDED, PLAN_CHANGED
from coursebridge.events.envelope import format_time, parse_time

# --- states -----------------------------------------------------------------------------------------------

PENDING = "pending"  # heard of (e.g. a plan switch arrived before the approval), never approved yet
ACTIVE = "active"
PAST_DUE = "past_due"
SUSPENDED = "suspended"
CANCELLED = "cancelled"
EXPIRED = "expired"

GRANTING = frozenset({ACTIVE, PAST_DUE, CANCELLED})  # the student keeps the courses
REVOKED = frozenset({SUSPENDED, EXPIRED})  # the courses are taken away

SUBSCRIPTION = "subscription"
FIXED_TERM = "fixed_term"

DEFAULT_GRACE_DAYS = 7
SAFETY_NET_REASON = "paid-through date and grace period passed with no renewal (safety net)"
MAX_APPLIED_IDS = 200
MAX_HISTORY = 100
MAX_DELAYS = 50
MAX_COMPENSATIONS = 20
MAX_AWAITING_FACTS = 20
DEFAULT_MAX_SKEW = timedelta(minutes=2)

# --- what a payment event means here ----------------------------------------------------------------------

APPROVAL = "approval"
DELAY = "delay"
CANCELLATION = "cancellation"
COMPENSATION = "compensation"

APPROVAL_KINDS = frozenset({"purchase_approved", "purchase_complete"})
COMPENSATION_KINDS = frozenset({"purchase_refunded", "purchase_chargeback", "purchase_protest"})
CHARGE_DATE_KIND = "update_subscription_charge_date"
SWITCH_PLAN_KIND = "switch_plan"
CANCELLATION_KIND = "subscription_cancellation"
DELAYED_KIND = "purchase_delayed"
OVERDUE_STATUSES = frozenset({"overdue", "delayed", "past_due"})
CANCELLED_STATUSES = frozenset({"canceled_by_customer", "canceled_by_seller", "canceled_by_admin", "expired"})
# kinds whose next-charge date says how far the subscription is paid
PAID_THROUGH_KINDS = APPROVAL_KINDS | {CANCELLATION_KIND, CHARGE_DATE_KIND, SWITCH_PLAN_KIND}


@dataclass(frozen=True)
class ProductTerms:
    """The subscription service's own copy of a catalogue entry (from ``catalogue_product.v1``)."""

    product_id: str
    access_days: int | None = None
    grace_days: int | None = None
    revision: int = 0

    def grace(self, default: int) -> int:
        return self.grace_days if self.grace_days is not None else default


@dataclass(frozen=True)
class PaymentFact:
    """The parts of a ``payment_event.v1`` this service acts on."""

    event_id: str
    kind: str
    occurred_at: str
    product_id: str | None = None
    subscriber_code: str | None = None
    transaction: str | None = None
    email: str | None = None
    plan_id: str | None = None
    plan_name: str | None = None
    previous_plan_id: str | None = None
    next_charge_at: str | None = None
    recurrence_number: int | None = None
    approved_at: str | None = None
    purchase_status: str | None = None
    subscription_status: str | None = None
    is_subscription: bool = False

    @classmethod
    def from_event_data(cls, data: dict[str, Any]) -> PaymentFact:
        product = data.get("product") or {}
        purchase = data.get("purchase") or {}
        subscription = data.get("subscription") or {}
        switch = data.get("plan_switch") or {}
        buyer = data.get("buyer") or {}
        plan = subscription.get("plan") or {}
        if data.get("kind") == SWITCH_PLAN_KIND and switch.get("new_plan"):
            plan = switch["new_plan"]
        return cls(
            event_id=data["hotmart"]["event_id"],
            kind=data["kind"],
            occurred_at=data["occurred_at"],
            product_id=product.get("id"),
            subscriber_code=subscription.get("subscriber_code"),
            transaction=data.get("transaction"),
            email=buyer.get("email") or (data.get("member") or {}).get("email"),
            plan_id=plan.get("id"),
            plan_name=plan.get("name"),
            previous_plan_id=(switch.get("previous_plan") or {}).get("id"),
            next_charge_at=purchase.get("next_charge_at") or subscription.get("next_charge_at"),
            recurrence_number=purchase.get("recurrence_number"),
            approved_at=purchase.get("approved_at"),
            purchase_status=purchase.get("status"),
            subscription_status=subscription.get("status"),
            # A purchase says itself whether it is a subscription charge (ingest decides it from the
            # subscriber code); a subscription block without a code (e.g. a status only) proves nothing.
            is_subscription=bool(purchase.get("is_subscription"))
            if purchase
            else bool(subscription.get("subscriber_code")),
        )

    @property
    def signal(self) -> str | None:
        """approval, delay, cancellation, compensation, or None (dates / plan only, or nothing)."""
        if self.kind in APPROVAL_KINDS:
            return APPROVAL
        if self.kind == DELAYED_KIND:
            return DELAY
        if self.kind == CANCELLATION_KIND:
            return CANCELLATION
        if self.kind in COMPENSATION_KINDS:
            return COMPENSATION
        if self.subscription_status in CANCELLED_STATUSES:
            return CANCELLATION
        if self.subscription_status in OVERDUE_STATUSES or self.purchase_status == "overdue":
            return DELAY
        return None

    @property
    def touches_access(self) -> bool:
        return self.product_id is not None and (
            self.signal is not None or self.kind in (CHARGE_DATE_KIND, SWITCH_PLAN_KIND)
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.occurred_at, self.event_id)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PaymentFact:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def awaits_terms(fact: PaymentFact, terms: ProductTerms | None) -> bool:
    """A one-off purchase of a product whose terms are not known yet: it may be fixed-term, so it is kept
    until the catalogue says (a sale parked for want of a mapping always starts like this)."""
    return (
        terms is None
        and fact.touches_access
        and not fact.subscriber_code
        and not fact.is_subscription
        and bool(fact.transaction)
    )


def access_id_for(fact: PaymentFact, terms: ProductTerms | None) -> str | None:
    """``sub:<code>:<product>`` for subscriptions; ``tx:<transaction>`` for fixed-term one-off purchases;
    None when this service has nothing to track (lifetime one-off purchases are enrollment's business)."""
    if not fact.touches_access:
        return None
    if fact.subscriber_code:
        return f"sub:{fact.subscriber_code}:{fact.product_id}"
    if fact.transaction and not fact.is_subscription and terms is not None and terms.access_days:
        return f"tx:{fact.transaction}"
    return None


# --- the access -----------------------------------------------------------------------------------------

Stamp = dict[str, Any]  # {"at": RFC 3339, "event_id": str, ...}: a register value with its event time


def _key(stamp: Stamp | None) -> tuple[str, str]:
    return ("", "") if stamp is None else (stamp["at"], stamp["event_id"])


def _add_days(moment: str, days: int) -> str:
    return format_time(parse_time(moment) + timedelta(days=days))


@dataclass
class Access:
    access_id: str
    kind: str
    product_id: str
    subscriber_code: str | None = None
    state: str = PENDING
    state_since: str | None = None
    grace_days: int = DEFAULT_GRACE_DAYS
    access_days: int | None = None  # fixed term only, fixed at creation
    # registers
    last_paid: Stamp | None = None
    delays: list[Stamp] = field(default_factory=list)
    cancellation: Stamp | None = None
    paid_through_reg: Stamp | None = None  # {"value": RFC 3339, ...}
    plan_reg: Stamp | None = None  # {"value": {"id", "name"}, ...}
    email_reg: Stamp | None = None
    transaction_reg: Stamp | None = None
    term_start: str | None = None
    compensations: list[dict[str, Any]] = field(default_factory=list)
    # derived, kept for queries and the read API
    grace_until: str | None = None
    ends_at: str | None = None  # cancelled: access until; fixed term: expiry
    next_deadline: str | None = None  # the sweep picks accesses with next_deadline <= now
    evaluated_at: str | None = None
    # bookkeeping
    applied: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    emitted: int = 0

    # -- plain values ------------------------------------------------------------------------------------

    @property
    def paid_through(self) -> str | None:
        if self.kind == FIXED_TERM:
            return self.ends_at
        return None if self.paid_through_reg is None else self.paid_through_reg["value"]

    @property
    def plan_id(self) -> str | None:
        return None if self.plan_reg is None else self.plan_reg["value"]["id"]

    @property
    def plan_name(self) -> str | None:
        return None if self.plan_reg is None else self.plan_reg["value"]["name"]

    @property
    def email(self) -> str | None:
        return None if self.email_reg is None else self.email_reg["value"]

    @property
    def transaction(self) -> str | None:
        return None if self.transaction_reg is None else self.transaction_reg["value"]

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Access:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class Evaluation:
    state: str
    next_deadline: str | None = None
    grace_until: str | None = None
    ends_at: str | None = None
    effective_at: str | None = None  # time-based states: when the deadline was reached
    reason: str | None = None  # time-based states: why


def evaluate(access: Access, now: str) -> Evaluation:
    """The state the registers imply at ``now`` (RFC 3339)."""
    if access.kind == FIXED_TERM:
        if access.last_paid is None or access.term_start is None:
            return Evaluation(PENDING)
        ends = _add_days(access.term_start, access.access_days or 0)
        if now >= ends:
            reason = f"fixed term of {access.access_days} days reached"
            return Evaluation(EXPIRED, ends_at=ends, effective_at=ends, reason=reason)
        return Evaluation(ACTIVE, next_deadline=ends, ends_at=ends)

    if access.cancellation is not None and _key(access.cancellation) > _key(access.last_paid):
        if access.paid_through is not None:
            ends, reason = access.paid_through, "cancelled; paid-through date reached"
        else:  # no paid-through date known: never revoke at once, give the grace period
            ends = _add_days(access.cancellation["at"], access.grace_days)
            reason = "cancelled; no paid-through date known and the grace period ended"
        if now >= ends:
            return Evaluation(EXPIRED, ends_at=ends, effective_at=ends, reason=reason)
        return Evaluation(CANCELLED, next_deadline=ends, ends_at=ends)

    if access.delays:
        grace_until = _add_days(access.delays[0]["at"], access.grace_days)
        if now >= grace_until:
            reason = f"payment overdue beyond the {access.grace_days}-day grace period"
            return Evaluation(SUSPENDED, grace_until=grace_until, effective_at=grace_until, reason=reason)
        return Evaluation(PAST_DUE, next_deadline=grace_until, grace_until=grace_until)

    if access.last_paid is not None:
        # Safety net: a paid-through date that passed (plus grace) with no renewal means a renewal, or a
        # cancellation, was lost on the way; access never runs on forever. A renewal restores it.
        if access.paid_through is not None:
            deadline = _add_days(access.paid_through, access.grace_days)
            if now >= deadline:
                return Evaluation(SUSPENDED, effective_at=deadline, reason=SAFETY_NET_REASON)
            return Evaluation(ACTIVE, next_deadline=deadline)
        return Evaluation(ACTIVE)
    return Evaluation(PENDING)


# --- transitions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessChange:
    """One decision to publish: ``type`` is an access event type (``coursebridge.subscription.*``)."""

    type: str
    access_id: str
    sequence: int  # 1, 2, ... per access: makes the event id stable and orders the outbox
    state: str
    reason: str
    effective_at: str
    previous_plan_id: str | None = None

    @property
    def version(self) -> int:
        """The access's change counter: only grows, from this service's store (never a clock)."""
        return self.sequence


@dataclass
class Outcome:
    access: Access
    changes: list[AccessChange] = field(default_factory=list)
    duplicate: bool = False
    clock_ahead: str | None = None  # a distrusted earlier evaluation time (a clock that ran fast)


def _change_type(old: str, new: str) -> str | None:
    if new == old:
        return None
    if new == SUSPENDED:
        return ACCESS_SUSPENDED
    if new == EXPIRED:
        return ACCESS_EXPIRED
    if old in REVOKED and new in GRANTING:
        return ACCESS_RESTORED
    return None


def _event_reason(fact: PaymentFact, new_state: str) -> str:
    signal = fact.signal
    if signal == APPROVAL:
        if fact.recurrence_number and fact.recurrence_number > 1:
            return f"renewal approved (recurrence {fact.recurrence_number})"
        return "payment approved"
    if signal == DELAY:
        return "payment overdue; grace period started"
    if signal == CANCELLATION:
        return "subscription cancelled; access kept until the paid-through date"
    if fact.kind == CHARGE_DATE_KIND:
        return "charge date moved"
    if fact.kind == SWITCH_PLAN_KIND:
        return "plan switched"
    return f"{fact.kind} recorded"


def _lww(current: Stamp | None, value: Any, fact: PaymentFact) -> Stamp | None:
    if value is None or fact.key <= _key(current):
        return current
    return {"value": value, "at": fact.occurred_at, "event_id": fact.event_id}


def new_access(access_id: str, fact: PaymentFact, terms: ProductTerms | None) -> Access:
    if access_id.startswith("tx:"):
        return Access(
            access_id=access_id,
            kind=FIXED_TERM,
            product_id=fact.product_id or "",
            access_days=terms.access_days if terms else None,
        )
    return Access(
        access_id=access_id,
        kind=SUBSCRIPTION,
        product_id=fact.product_id or "",
        subscriber_code=fact.subscriber_code,
    )


def merge_payment(
    access: Access,
    fact: PaymentFact,
    terms: ProductTerms | None,
    *,
    default_grace_days: int = DEFAULT_GRACE_DAYS,
) -> bool:
    """Merge one payment fact into the registers of ``access`` (mutated); False for a duplicate."""
    if fact.event_id in access.applied:
        return False
    access.grace_days = terms.grace(default_grace_days) if terms is not None else default_grace_days

    stamp = {"at": fact.occurred_at, "event_id": fact.event_id}
    access.email_reg = _lww(access.email_reg, fact.email, fact)
    signal = fact.signal
    if signal == APPROVAL:
        access.transaction_reg = _lww(access.transaction_reg, fact.transaction, fact)
        if fact.key > _key(access.last_paid):
            access.last_paid = stamp
            access.delays = [d for d in access.delays if _key(d) > fact.key]
        if access.kind == FIXED_TERM:
            started = fact.approved_at or fact.occurred_at
            access.term_start = min(access.term_start or started, started)
    elif signal == DELAY:
        if fact.key > _key(access.last_paid) and all(d["event_id"] != fact.event_id for d in access.delays):
            access.delays = sorted([*access.delays, stamp], key=_key)[:MAX_DELAYS]
    elif signal == CANCELLATION:
        if fact.key > _key(access.cancellation):
            access.cancellation = stamp
    elif signal == COMPENSATION:  # refunds and chargebacks are the enrollment saga's: record only
        record = {**stamp, "kind": fact.kind, "transaction": fact.transaction}
        access.compensations = [*access.compensations, record][-MAX_COMPENSATIONS:]
    if access.kind == SUBSCRIPTION:
        if fact.kind in PAID_THROUGH_KINDS:
            access.paid_through_reg = _lww(access.paid_through_reg, fact.next_charge_at, fact)
        if fact.plan_id is not None:
            access.plan_reg = _lww(access.plan_reg, {"id": fact.plan_id, "name": fact.plan_name}, fact)
    access.applied = [*access.applied, fact.event_id][-MAX_APPLIED_IDS:]
    return True


def apply_payment(
    access: Access,
    fact: PaymentFact,
    terms: ProductTerms | None,
    now: datetime,
    *,
    default_grace_days: int = DEFAULT_GRACE_DAYS,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> Outcome:
    """Merge one payment fact into ``access`` (mutated and returned) and re-evaluate it at ``now``."""
    old_plan = access.plan_id
    if not merge_payment(access, fact, terms, default_grace_days=default_grace_days):
        return Outcome(access, duplicate=True)

    outcome = Outcome(access)
    change = _transition(access, now, fact, max_skew, outcome)
    if change is not None:
        outcome.changes.append(change)
    elif (
        fact.kind == SWITCH_PLAN_KIND
        and access.plan_id is not None
        and access.plan_id != old_plan
        and access.state in GRANTING
    ):
        outcome.changes.append(
            _record_change(
                access,
                PLAN_CHANGED,
                "plan switched",
                fact.occurred_at,
                previous_plan_id=old_plan or fact.previous_plan_id,
            )
        )
    return outcome


def advance(access: Access, now: datetime, *, max_skew: timedelta = DEFAULT_MAX_SKEW) -> Outcome:
    """The sweep's step: re-evaluate at a later ``now`` (grace ended, paid-through or fixed term reached),
    or at an earlier one when the last evaluation came from a clock running ahead by more than
    ``max_skew``."""
    outcome = Outcome(access)
    change = _transition(access, now, None, max_skew, outcome)
    if change is not None:
        outcome.changes.append(change)
    return outcome


def trusted_clock(evaluated_at: str | None, now: datetime, max_skew: timedelta) -> tuple[str, str | None]:
    """The clock to evaluate at, and the earlier evaluation time that is distrusted (or None).

    A lagging clock (within ``max_skew``) never undoes a time-based transition: the later evaluation time
    is kept. An evaluation stamped beyond ``now + max_skew`` was made by a clock running fast: it is not
    carried forward, so its premature decisions are re-evaluated at ``now``.
    """
    clock = format_time(now)
    if evaluated_at is None or evaluated_at <= clock:
        return clock, None
    if evaluated_at <= format_time(now + max_skew):
        return evaluated_at, None
    return clock, evaluated_at


def _transition(
    access: Access, now: datetime, fact: PaymentFact | None, max_skew: timedelta, outcome: Outcome
) -> AccessChange | None:
    clock, distrusted = trusted_clock(access.evaluated_at, now, max_skew)
    outcome.clock_ahead = distrusted
    evaluation = evaluate(access, clock)
    access.evaluated_at = clock
    access.next_deadline = evaluation.next_deadline
    access.grace_until = evaluation.grace_until
    access.ends_at = evaluation.ends_at
    old, new = access.state, evaluation.state
    if old == new:
        return None
    if evaluation.reason is not None:
        reason, effective_at = evaluation.reason, evaluation.effective_at or clock
    elif fact is not None:
        reason, effective_at = _event_reason(fact, new), fact.occurred_at
    elif distrusted is not None:
        reason = f"re-evaluated: an earlier evaluation ran on a clock ahead ({distrusted})"
        effective_at = clock
    else:
        reason, effective_at = "re-evaluated", clock
    access.state, access.state_since = new, effective_at
    access.history = [
        *access.history,
        {
            "at": effective_at,
            "recorded_at": clock,
            "from": old,
            "to": new,
            "reason": reason,
            "event_id": fact.event_id if fact else None,
        },
    ][-MAX_HISTORY:]
    change_type = _change_type(old, new)
    if change_type is None:
        return None
    return _record_change(access, change_type, reason, effective_at)


def _record_change(
    access: Access, change_type: str, reason: str, effective_at: str, *, previous_plan_id: str | None = None
) -> AccessChange:
    access.emitted += 1
    return AccessChange(
        type=change_type,
        access_id=access.access_id,
        sequence=access.emitted,
        state=access.state,
        reason=reason,
        effective_at=effective_at,
        previous_plan_id=previous_plan_id,
    )


def change_data(access: Access, change: AccessChange) -> dict[str, Any]:
    """The ``subscription_access.v1`` data of one change."""
    return {
        "access_id": access.access_id,
        "subscriber_code": access.subscriber_code,
        "transaction": access.transaction,
        "product_id": access.product_id,
        "plan_id": access.plan_id,
        "previous_plan_id": change.previous_plan_id,
        "email": access.email,
        "state": change.state,
        "reason": change.reason[:500],
        "effective_at": change.effective_at,
        "paid_through": access.paid_through,
        "version": change.version,
    }


def view(access: Access, *, include_email: bool = True) -> dict[str, Any]:
    """What the read API shows of one access."""
    body: dict[str, Any] = {
        "access_id": access.access_id,
        "kind": access.kind,
        "product_id": access.product_id,
        "state": access.state,
        "state_since": access.state_since,
        "paid_through": access.paid_through,
        "grace_until": access.grace_until,
        "ends_at": access.ends_at,
        "next_deadline": access.next_deadline,
        "plan": access.plan_reg["value"] if access.plan_reg else None,
        "transaction": access.transaction,
        "compensations": [{k: c[k] for k in ("kind", "at", "transaction")} for c in access.compensations],
        "history": [{k: h[k] for k in ("at", "from", "to", "reason")} for h in access.history],
    }
    if include_email:
        body["email"] = access.email
    return body
