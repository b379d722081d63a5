"""Use cases: apply a payment event, keep the catalogue copy, sweep deadlines, read a subscriber's accesses.

Each change of an access runs in one store transaction: read the product terms and the access, decide
(``subscription.domain.access``), write the access and stage its events in the outbox. A redelivered
payment event is recognised by its Hotmart event id and changes nothing.

A one-off purchase of a product whose terms are not known yet may be fixed-term: its facts wait in
``awaiting_terms`` (one document per transaction) and the access is created when the catalogue event
brings the terms (or dropped when the product turns out to be lifetime).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter

from coursebridge.events import Event, new_event
from coursebridge.events.envelope import format_time
from coursebridge.lookup import email_key, required_email_key
from coursebridge.outbox import Outbox, OutboxRelay
from coursebridge.ports import DocumentStore, Filter, Transaction
from coursebridge.topology import SUBSCRIPTIONS
from subscription.domain.access import (
    DEFAULT_GRACE_DAYS,
    DEFAULT_MAX_SKEW,
    MAX_AWAITING_FACTS,
    SAFETY_NET_REASON,
    Access,
    AccessChange,
    Outcome,
    PaymentFact,
    access_id_for,
    advance,
    apply_payment,
    awaits_terms,
    change_data,
    merge_payment,
    new_access,
    view,
)
from subscription.domain.catalogue import supersedes, terms_doc, terms_from_catalogue, terms_from_doc

log = structlog.get_logger(__name__)

ACCESSES = "accesses"
PRODUCTS = "products"
AWAITING = "awaiting_terms"
EVENT_SOURCE = "coursebridge/subscription"
OUTBOX = "outbox"
_EVENT_NAMESPACE = uuid.UUID("6c1f2b8e-4a55-4f7e-9a64-3f1f0b6f2c11")
SAFETY_NET_SUSPENSIONS = Counter(
    "coursebridge_subscription_safety_net_suspensions_total",
    "Accesses suspended because their paid-through date and grace passed with no renewal (a lost webhook)",
)
CLOCK_AHEAD = Counter(
    "coursebridge_subscription_clock_ahead_reevaluations_total",
    "Accesses re-evaluated because their last evaluation came from a clock running ahead beyond the skew",
)
TERMS_ADOPTED = Counter(
    "coursebridge_subscription_awaiting_terms_adopted_total",
    "One-off purchases kept until their product's terms arrived, by what the terms said",
    ["outcome"],
)


def access_event(access: Access, change: AccessChange, now: datetime) -> Event:
    """The CloudEvent of one change; its id is stable per (access, transition number)."""
    return new_event(
        change.type,
        change_data(access, change),
        source=EVENT_SOURCE,
        correlation_id=access.transaction or access.access_id,
        subject=access.access_id,
        event_id=str(uuid.uuid5(_EVENT_NAMESPACE, f"{access.access_id}#{change.sequence}")),
        time=now,
    )


def _note_clock_ahead(access_id: str, evaluated_at: str | None, now: datetime) -> None:
    """Count and log (after the commit) an evaluation found stamped ahead of this clock beyond the skew:
    some pod's clock runs fast (or this one's lags); an operator should look at the clocks."""
    if evaluated_at is not None:
        CLOCK_AHEAD.inc()
        log.warning(
            "access.clock_ahead", access_id=access_id, evaluated_at=evaluated_at, now=format_time(now)
        )


def _save(
    tx: Transaction, outbox: Outbox, access: Access, changes: Iterable[AccessChange], now: datetime
) -> list[Event]:
    """Write the access and stage its events in the outbox (``coursebridge.outbox``) in one transaction."""
    doc = access.to_doc()
    key = email_key(access.email)
    if key is not None:  # operators find a buyer's accesses by e-mail without an e-mail index
        doc["email_key"] = key
    tx.set(ACCESSES, access.access_id, doc)
    events = []
    for change in changes:
        if change.reason == SAFETY_NET_REASON:
            SAFETY_NET_SUSPENSIONS.inc()
            log.warning("access.safety_net_suspended", access_id=access.access_id)
        event = access_event(access, change, now)
        outbox.add(tx, SUBSCRIPTIONS, event, access.access_id)
        events.append(event)
    return events


def handle_payment(
    store: DocumentStore,
    data: dict[str, Any],
    *,
    now: datetime,
    default_grace_days: int = DEFAULT_GRACE_DAYS,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> list[Event]:
    """Apply one ``payment_event.v1``; returns the access events staged for publishing."""
    fact = PaymentFact.from_event_data(data)
    if not fact.touches_access:
        return []
    outbox = Outbox(store, OUTBOX)
    outcomes: list[Outcome] = []

    def work(tx: Transaction) -> list[Event]:
        outcomes.clear()
        terms = terms_from_doc(tx.get(PRODUCTS, fact.product_id or ""))
        access_id = access_id_for(fact, terms)
        if access_id is None:
            if awaits_terms(fact, terms):
                _await_terms(tx, fact, now)
            return []
        doc = tx.get(ACCESSES, access_id)
        waiting = tx.get(AWAITING, access_id) if access_id.startswith("tx:") else None
        access = Access.from_doc(doc) if doc is not None else new_access(access_id, fact, terms)
        for earlier in _awaiting_facts(waiting):  # facts kept before the terms were known
            merge_payment(access, earlier, terms, default_grace_days=default_grace_days)
        outcome = apply_payment(
            access, fact, terms, now, default_grace_days=default_grace_days, max_skew=max_skew
        )
        outcomes.append(outcome)
        if waiting is not None:
            tx.delete(AWAITING, access_id)
        if outcome.duplicate and waiting is None:
            return []
        if outcome.duplicate:  # the kept facts still make the access: evaluate it now
            outcome = advance(access, now, max_skew=max_skew)
        return _save(tx, outbox, outcome.access, outcome.changes, now)

    events = store.transaction(work)
    for outcome in outcomes:
        _note_clock_ahead(outcome.access.access_id, outcome.clock_ahead, now)
    for event in events:
        log.info("access.changed", event_type=event.type, access_id=event.subject, state=event.data["state"])
    return events


def _awaiting_facts(doc: dict[str, Any] | None) -> list[PaymentFact]:
    return [] if doc is None else [PaymentFact.from_doc(f) for f in doc.get("facts") or []]


def _await_terms(tx: Transaction, fact: PaymentFact, now: datetime) -> None:
    """Keep a one-off purchase's fact until its product's terms are known (``adopt_awaiting``)."""
    doc_id = f"tx:{fact.transaction}"
    doc = tx.get(AWAITING, doc_id) or {
        "access_id": doc_id,
        "product_id": fact.product_id,
        "transaction": fact.transaction,
        "first_seen": format_time(now),
        "facts": [],
    }
    if any(f.get("event_id") == fact.event_id for f in doc["facts"]):
        return
    doc["facts"] = [*doc["facts"], fact.to_doc()][-MAX_AWAITING_FACTS:]
    tx.set(AWAITING, doc_id, doc)


def handle_catalogue(
    store: DocumentStore,
    data: dict[str, Any],
    *,
    now: datetime | None = None,
    default_grace_days: int = DEFAULT_GRACE_DAYS,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> bool:
    """Keep our copy of a product's terms; True when it changed (older revisions are ignored).

    With ``now``, the one-off purchases that waited for these terms are then settled (also on a
    redelivery: a crash between the two steps loses nothing)."""
    terms = terms_from_catalogue(data)

    def work(tx: Transaction) -> bool:
        if not supersedes(terms, tx.get(PRODUCTS, terms.product_id)):
            return False
        tx.set(
            PRODUCTS, terms.product_id, terms_doc(terms, data.get("changed_at"), bool(data.get("removed")))
        )
        return True

    changed = store.transaction(work)
    if now is not None:
        adopt_awaiting(store, terms.product_id, now, default_grace_days=default_grace_days, max_skew=max_skew)
    return changed


def adopt_awaiting(
    store: DocumentStore,
    product_id: str,
    now: datetime,
    *,
    default_grace_days: int = DEFAULT_GRACE_DAYS,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    batch_size: int = 200,
) -> dict[str, int]:
    """Settle the one-off purchases of ``product_id`` that waited for its terms: a fixed-term product gets
    its accesses (expired at once when the term already ended: enrollment removes the courses); a
    lifetime product's purchases are dropped (enrollment's grant stands). Each sale in its own
    transaction; returns counts by outcome."""
    outbox = Outbox(store, OUTBOX)
    counts: dict[str, int] = {}
    seen: set[str] = set()
    while True:
        docs = store.query(AWAITING, [Filter("product_id", "==", product_id)], limit=batch_size)
        fresh = [doc for doc in docs if doc.id not in seen]
        if not fresh:
            break
        for doc in fresh:
            seen.add(doc.id)
            outcome = store.transaction(
                lambda tx, doc_id=doc.id: _adopt_one(tx, outbox, doc_id, now, default_grace_days, max_skew)
            )
            if outcome is not None:
                counts[outcome] = counts.get(outcome, 0) + 1
                TERMS_ADOPTED.labels(outcome=outcome).inc()
        if len(docs) < batch_size:
            break
    if counts:
        log.info("awaiting_terms.settled", product_id=product_id, counts=counts)
    return counts


def _adopt_one(
    tx: Transaction,
    outbox: Outbox,
    doc_id: str,
    now: datetime,
    default_grace_days: int,
    max_skew: timedelta,
) -> str | None:
    waiting = tx.get(AWAITING, doc_id)
    if waiting is None:
        return None
    terms = terms_from_doc(tx.get(PRODUCTS, waiting["product_id"]))
    if terms is None:
        return None  # not yet: the catalogue event will settle it
    facts = _awaiting_facts(waiting)
    access_id = next((a for a in (access_id_for(f, terms) for f in facts) if a is not None), None)
    doc = tx.get(ACCESSES, access_id) if access_id is not None else None
    tx.delete(AWAITING, doc_id)
    if access_id is None:
        return "lifetime"
    access = Access.from_doc(doc) if doc is not None else new_access(access_id, facts[0], terms)
    for fact in sorted(facts, key=lambda f: f.key):
        merge_payment(access, fact, terms, default_grace_days=default_grace_days)
    outcome = advance(access, now, max_skew=max_skew)
    _save(tx, outbox, access, outcome.changes, now)
    return access.state


# --- the sweep -----------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    now: str
    examined: int = 0
    changed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    access_ids: dict[str, list[str]] = field(default_factory=dict)
    reevaluated: int = 0  # last evaluated by a clock running ahead beyond the allowed skew

    def record(self, state: str, access_id: str) -> None:
        self.changed += 1
        self.counts[state] = self.counts.get(state, 0) + 1
        self.access_ids.setdefault(state, []).append(access_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "examined": self.examined,
            "changed": self.changed,
            "counts": dict(self.counts),
            "access_ids": {k: list(v) for k, v in self.access_ids.items()},
            "reevaluated": self.reevaluated,
        }


def sweep(
    store: DocumentStore,
    now: datetime,
    *,
    batch_size: int = 200,
    max_batches: int = 1000,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> SweepReport:
    """Apply every time-based transition due at ``now``: grace ended (suspended), paid-through date reached
    after a cancellation (expired), fixed term reached (expired).

    Finds accesses by ``next_deadline <= now``; each one is re-read and re-checked in its own transaction, so
    two overlapping sweeps (or a sweep and a payment) never publish one transition twice. Whatever fell due
    while nothing ran is caught up, with ``effective_at`` the deadline itself.

    Then re-evaluates every access whose last evaluation is stamped beyond ``now + max_skew``: it was made
    on a clock running fast, and a premature suspension or expiry is undone (counted in ``reevaluated``).
    """
    clock = format_time(now)
    report = SweepReport(now=clock)
    outbox = Outbox(store, OUTBOX)
    latest_ahead: str | None = None
    passes = (
        ([Filter("next_deadline", "<=", clock)], "next_deadline"),
        ([Filter("evaluated_at", ">", format_time(now + max_skew))], "evaluated_at"),
    )
    for filters, order_by in passes:
        seen: set[str] = set()
        for _ in range(max_batches):
            due = store.query(ACCESSES, filters, order_by=order_by, limit=batch_size)
            fresh = [doc for doc in due if doc.id not in seen]
            if not fresh:
                break
            for doc in fresh:
                seen.add(doc.id)
                report.examined += 1
                changed_to, ahead = store.transaction(
                    lambda tx, access_id=doc.id: _advance_one(tx, outbox, access_id, now, max_skew)
                )
                if ahead is not None:
                    report.reevaluated += 1
                    CLOCK_AHEAD.inc()
                    latest_ahead = max(latest_ahead or ahead, ahead)
                if changed_to is not None:
                    report.record(changed_to, doc.id)
            if len(due) < batch_size:
                break
    if report.reevaluated:  # one line per sweep, however many accesses a fast clock touched
        log.warning(
            "sweep.clock_ahead", reevaluated=report.reevaluated, latest_evaluated_at=latest_ahead, now=clock
        )
    if report.changed or report.reevaluated:
        log.info(
            "sweep.done",
            examined=report.examined,
            changed=report.changed,
            counts=report.counts,
            reevaluated=report.reevaluated,
        )
    return report


def _advance_one(
    tx: Transaction, outbox: Outbox, access_id: str, now: datetime, max_skew: timedelta
) -> tuple[str | None, str | None]:
    """(the new state when it changed, the distrusted evaluation time when the last one ran ahead)."""
    doc = tx.get(ACCESSES, access_id)
    if doc is None:
        return None, None
    access = Access.from_doc(doc)
    before = (access.state, access.next_deadline)
    outcome = advance(access, now, max_skew=max_skew)
    ahead = outcome.clock_ahead
    if (access.state, access.next_deadline) == before and not outcome.changes and ahead is None:
        return None, None  # someone else got there first: nothing to write, nothing to publish
    _save(tx, outbox, access, outcome.changes, now)
    return (access.state if access.state != before[0] else None), ahead


# --- reads ---------------------------------------------------------------------------------------------


def subscriber_accesses(store: DocumentStore, subscriber_code: str) -> list[dict[str, Any]]:
    docs = store.query(ACCESSES, [Filter("subscriber_code", "==", subscriber_code)])
    return [view(Access.from_doc(doc.data)) for doc in sorted(docs, key=lambda d: d.id)]


def accesses_by_email(store: DocumentStore, email: str) -> list[dict[str, Any]]:
    """A buyer's accesses found by the keyed hash of the e-mail (``coursebridge.lookup``)."""
    docs = store.query(ACCESSES, [Filter("email_key", "==", required_email_key(email))])
    return [view(Access.from_doc(doc.data)) for doc in sorted(docs, key=lambda d: d.id)]


def get_access(store: DocumentStore, access_id: str) -> Access | None:
    doc = store.get(ACCESSES, access_id)
    return Access.from_doc(doc) if doc is not None else None


def relay_all(relay: OutboxRelay, max_rounds: int = 100) -> int:
    """Publish the outbox until it is empty or a round fails (the sweep CLI's ``--relay``, tests)."""
    total = 0
    for _ in range(max_rounds):
        round_ = relay.relay_once()
        total += round_.published
        if round_.errors or round_.published == 0:
            break
    return total
