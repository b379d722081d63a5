"""Use cases: apply a payment event, keep the catalogue copy, sweep deadlines, read a subscriber's accesses.

Each change of an access runs in one store transaction: read the product terms and the access, decide
(``subscription.domain.access``), write the access and stage its events in the outbox. A redelivered
payment event is recognised by its Hotmart event id and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
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
    SAFETY_NET_REASON,
    Access,
    AccessChange,
    PaymentFact,
    access_id_for,
    advance,
    apply_payment,
    change_data,
    new_access,
    view,
)
from subscription.domain.catalogue import supersedes, terms_doc, terms_from_catalogue, terms_from_doc

log = structlog.get_logger(__name__)

ACCESSES = "accesses"
PRODUCTS = "products"
EVENT_SOURCE = "coursebridge/subscription"
OUTBOX = "outbox"
_EVENT_NAMESPACE = uuid.UUID("6c1f2b8e-4a55-4f7e-9a64-3f1f0b6f2c11")
SAFETY_NET_SUSPENSIONS = Counter(
    "coursebridge_subscription_safety_net_suspensions_total",
    "Accesses suspended because their paid-through date and grace passed with no renewal (a lost webhook)",
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
    store: DocumentStore, data: dict[str, Any], *, now: datetime, default_grace_days: int = DEFAULT_GRACE_DAYS
) -> list[Event]:
    """Apply one ``payment_event.v1``; returns the access events staged for publishing."""
    fact = PaymentFact.from_event_data(data)
    if not fact.touches_access:
        return []
    outbox = Outbox(store, OUTBOX)

    def work(tx: Transaction) -> list[Event]:
        terms = terms_from_doc(tx.get(PRODUCTS, fact.product_id or ""))
        access_id = access_id_for(fact, terms)
        if access_id is None:
            return []
        doc = tx.get(ACCESSES, access_id)
        access = Access.from_doc(doc) if doc is not None else new_access(access_id, fact, terms)
        outcome = apply_payment(access, fact, terms, now, default_grace_days=default_grace_days)
        if outcome.duplicate:
            return []
        return _save(tx, outbox, outcome.access, outcome.changes, now)

    events = store.transaction(work)
    for event in events:
        log.info("access.changed", event_type=event.type, access_id=event.subject, state=event.data["state"])
    return events


def handle_catalogue(store: DocumentStore, data: dict[str, Any]) -> bool:
    """Keep our copy of a product's terms; True when it changed (older revisions are ignored)."""
    terms = terms_from_catalogue(data)

    def work(tx: Transaction) -> bool:
        if not supersedes(terms, tx.get(PRODUCTS, terms.product_id)):
            return False
        tx.set(
            PRODUCTS, terms.product_id, terms_doc(terms, data.get("changed_at"), bool(data.get("removed")))
        )
        return True

    return store.transaction(work)


# --- the sweep -----------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    now: str
    examined: int = 0
    changed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    access_ids: dict[str, list[str]] = field(default_factory=dict)

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
        }


def sweep(
    store: DocumentStore, now: datetime, *, batch_size: int = 200, max_batches: int = 1000
) -> SweepReport:
    """Apply every time-based transition due at ``now``: grace ended (suspended), paid-through date reached
    after a cancellation (expired), fixed term reached (expired).

    Finds accesses by ``next_deadline <= now``; each one is re-read and re-checked in its own transaction, so
    two overlapping sweeps (or a sweep and a payment) never publish one transition twice. Whatever fell due
    while nothing ran is caught up, with ``effective_at`` the deadline itself.
    """
    clock = format_time(now)
    report = SweepReport(now=clock)
    seen: set[str] = set()
    outbox = Outbox(store, OUTBOX)
    for _ in range(max_batches):
        due = store.query(
            ACCESSES, [Filter("next_deadline", "<=", clock)], order_by="next_deadline", limit=batch_size
        )
        fresh = [doc for doc in due if doc.id not in seen]
        if not fresh:
            break
        for doc in fresh:
            seen.add(doc.id)
            report.examined += 1
            changed_to = store.transaction(
                lambda tx, access_id=doc.id: _advance_one(tx, outbox, access_id, now)
            )
            if changed_to is not None:
                report.record(changed_to, doc.id)
        if len(due) < batch_size:
            break
    if report.changed:
        log.info("sweep.done", examined=report.examined, changed=report.changed, counts=report.counts)
    return report


def _advance_one(tx: Transaction, outbox: Outbox, access_id: str, now: datetime) -> str | None:
    doc = tx.get(ACCESSES, access_id)
    if doc is None:
        return None
    access = Access.from_doc(doc)
    before = (access.state, access.next_deadline)
    outcome = advance(access, now)
    if (access.state, access.next_deadline) == before and not outcome.changes:
        return None  # someone else got there first: nothing to write, nothing to publish
    _save(tx, outbox, access, outcome.changes, now)
    return access.state if access.state != before[0] else None


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
