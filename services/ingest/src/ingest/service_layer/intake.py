"""Accept one authentic webhook body: store it with its outbox entry, or quarantine it with the reason.

Nothing here waits on Pub/Sub. The webhook document and its outbox entry are written in one transaction,
so either both exist (and the relay will publish) or neither does (and the caller answers 503 so Hotmart
retries). A resend with the same Hotmart event id and the same body finds the webhook document and changes
nothing; the same id with a *different* body is kept as a conflict (counted, listed in the admin API).

Besides the outbox entry, the transaction records the fact (``facts``, see ``ingest.domain.facts``) and the
subscriber's status register, which reconciliation compares with Hotmart's REST API. A webhook whose fact
reconciliation already recovered is recorded and not published again. Hotmart's "send test" bodies are
recorded and not published, unless the operator opted in (``HOTMART_ACCEPT_TEST_EVENTS``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import structlog

from coursebridge.events import Event, InvalidEvent, new_event
from coursebridge.events.envelope import format_time, parse_time, utc_now
from coursebridge.events.payments import register_payment_contracts
from coursebridge.lookup import email_key, required_email_key
from coursebridge.outbox import Outbox
from coursebridge.ports import Document, DocumentStore, Filter, Transaction
from coursebridge.runtime.logging import bind_correlation
from coursebridge.topology import PAYMENTS
from ingest.domain.facts import fact_key, merge_register, recovered_earlier, subscriber_code
from ingest.domain.facts import subscription_status as status_of
from ingest.domain.hotmart import NormalisedEvent, NotNormalisable, normalise
from ingest.domain.postback_v1 import normalise_postback, parse_form
from ingest.domain.records import (
    body_fingerprint,
    cloud_event_id,
    document_id,
    lookup_fields,
    pack_raw,
    quarantine_id,
    raw_lookup_fields,
    redact_form_hottok,
    redact_hottok,
    unpack_raw,
)

log = structlog.get_logger(__name__)
register_payment_contracts()

WEBHOOKS = "webhooks"
QUARANTINE = "quarantine"
CONFLICTS = "conflicts"
FACTS = "facts"
SUBSCRIBERS = "subscribers"
EVENT_SOURCE = "coursebridge/ingest"

Outcome = Literal["accepted", "duplicate", "quarantined", "conflict", "test", "recovered_earlier"]
BodyFormat = Literal["json", "form"]


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    event_id: str | None = None
    kind: str | None = None
    reason: str | None = None


def payment_event(normalised: NormalisedEvent) -> Event:
    """The CloudEvent announcing a normalised webhook; its id is stable across Hotmart's resends."""
    return new_event(
        normalised.event_type,
        normalised.data,
        source=EVENT_SOURCE,
        correlation_id=normalised.ordering_key,
        subject=normalised.subject,
        event_id=cloud_event_id(normalised.event_id),
        time=normalised.occurred_at,
    )


# --- facts shared with reconciliation ---------------------------------------------------------------------


@dataclass(frozen=True)
class FactReads:
    """What one fact's transaction reads before it writes (Firestore: every read before the first write)."""

    key: str | None
    fact: dict[str, Any] | None
    code: str | None
    register: dict[str, Any] | None


def read_fact(tx: Transaction, data: dict[str, Any]) -> FactReads:
    key = fact_key(data["kind"], data.get("transaction"))
    code = subscriber_code(data)
    return FactReads(
        key=key,
        fact=tx.get(FACTS, document_id(key)) if key is not None else None,
        code=code,
        register=tx.get(SUBSCRIBERS, document_id(code)) if code is not None else None,
    )


def write_fact(
    tx: Transaction, outbox: Outbox, reads: FactReads, event: Event, source: str, ordering_key: str
) -> None:
    """Stage ``event`` in the outbox and remember its fact and the subscriber's status."""
    data = event.data
    if reads.key is not None and reads.fact is None:
        tx.create(
            FACTS,
            document_id(reads.key),
            {
                "key": reads.key,
                "source": source,
                "event_id": event.id,
                "hotmart_event_id": data["hotmart"]["event_id"],
                "recorded_at": format_time(utc_now()),
            },
        )
    update_register(tx, reads, data, source)
    outbox.add(tx, PAYMENTS, event, ordering_key)


def update_register(tx: Transaction, reads: FactReads, data: dict[str, Any], source: str) -> None:
    if reads.code is None:
        return
    merged = merge_register(reads.register, data, source)
    if merged is not None:
        tx.set(SUBSCRIBERS, document_id(reads.code), {"subscriber_code": reads.code, **merged})


# --- webhooks ---------------------------------------------------------------------------------------------


def accept_webhook(
    store: DocumentStore,
    raw_body: bytes,
    *,
    now: datetime | None = None,
    body_format: BodyFormat = "json",
    accept_tests: bool = False,
) -> IntakeResult:
    """Store ``raw_body`` durably; raises ``StoreUnavailable`` when that is impossible right now."""
    received = now or utc_now()
    received_at = format_time(received)
    raw_body = redact_form_hottok(raw_body) if body_format == "form" else redact_hottok(raw_body)
    parsed = _parse(store, raw_body, body_format, received_at)
    if isinstance(parsed, IntakeResult):
        return parsed
    body, normalised_or_error = parsed, _normalise(parsed, body_format, received)
    if isinstance(normalised_or_error, str):
        return _quarantine(store, raw_body, normalised_or_error, received_at, body, body_format)
    normalised, event = normalised_or_error
    return _store_webhook(store, raw_body, body, normalised, event, received_at, body_format, accept_tests)


def _parse(store: DocumentStore, raw_body: bytes, body_format: BodyFormat, received_at: str) -> Any:
    if body_format == "form":
        try:
            return parse_form(raw_body)
        except NotNormalisable as error:
            return _quarantine(store, raw_body, error.reason, received_at, None, body_format)
    try:
        return json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _quarantine(store, raw_body, f"body is not valid JSON: {error}", received_at)


def _normalise(body: Any, body_format: BodyFormat, received: datetime) -> tuple[NormalisedEvent, Event] | str:
    """The normalised event and its CloudEvent, or why there is none (the quarantine reason)."""
    try:
        if body_format == "form":
            normalised = normalise_postback(body, received)
        else:
            normalised = normalise(body, received_at=received)
        return normalised, payment_event(normalised)
    except NotNormalisable as error:
        return str(error)
    except InvalidEvent as error:  # a normaliser bug must not cost a webhook: keep it for a person
        log.error("webhook.normalised_event_invalid", error=str(error)[:300])
        return f"normalised event breaks its contract: {error}"


def _store_webhook(
    store: DocumentStore,
    raw_body: bytes,
    body: Any,
    normalised: NormalisedEvent,
    event: Event,
    received_at: str,
    body_format: BodyFormat,
    accept_tests: bool,
) -> IntakeResult:
    bind_correlation(normalised.ordering_key)  # the rest of this request's log lines follow the purchase
    doc_id = document_id(normalised.event_id)
    fingerprint = body_fingerprint(body)
    packed = pack_raw(raw_body)
    test_ignored = normalised.test_event and not accept_tests
    transaction, code, email = lookup_fields(event.data)
    webhook = {
        "hotmart_event_id": normalised.event_id,
        "hotmart_event": normalised.event_name,
        "kind": normalised.kind,
        "received_at": received_at,
        "occurred_at": format_time(normalised.occurred_at),
        "ordering_key": normalised.ordering_key,
        "event_id": event.id,
        "status": "test" if test_ignored else "pending",
        "format": body_format,
        "fingerprint": fingerprint,
        "test_event": normalised.test_event,
        "anomalies": normalised.anomalies,
        "raw": packed,
        "raw_omitted": None if packed is not None else "body too large to keep whole; normalised event kept",
        # what operators search by; the e-mail only as a keyed hash (coursebridge.lookup)
        "transaction": transaction,
        "subscriber_code": code,
        "email_key": email_key(email),
    }

    def store_once(tx: Transaction) -> Outcome:
        existing = tx.get(WEBHOOKS, doc_id)
        if existing is not None:
            if _same_body(existing, fingerprint, body_format):
                return "duplicate"
            conflict_id = f"{doc_id}-{fingerprint[:16]}"
            if tx.get(CONFLICTS, conflict_id) is None:
                tx.create(CONFLICTS, conflict_id, _conflict(existing, webhook))
            return "conflict"
        reads = read_fact(tx, event.data)
        if test_ignored:
            tx.create(WEBHOOKS, doc_id, webhook)
            return "test"
        if recovered_earlier(normalised.kind, status_of(event.data), reads.fact, reads.register):
            tx.create(WEBHOOKS, doc_id, {**webhook, "status": "recovered_earlier"})
            update_register(tx, reads, event.data, "webhook")
            return "recovered_earlier"
        tx.create(WEBHOOKS, doc_id, webhook)
        write_fact(tx, Outbox(store), reads, event, "webhook", normalised.ordering_key)
        return "accepted"

    outcome: Outcome = store.transaction(store_once)
    if outcome == "conflict":
        log.warning("webhook.conflict", hotmart_event=normalised.event_name, kind=normalised.kind)
    else:
        log.debug(  # the request's access line carries the outcome; this one only adds ids
            "webhook." + outcome, hotmart_event=normalised.event_name, kind=normalised.kind, event_id=event.id
        )
    reason = "the same event id arrived earlier with a different body" if outcome == "conflict" else None
    return IntakeResult(outcome=outcome, event_id=normalised.event_id, kind=normalised.kind, reason=reason)


def _same_body(existing: dict[str, Any], fingerprint: str, body_format: BodyFormat) -> bool:
    known = existing.get("fingerprint")
    if known is None and existing.get("raw"):  # stored before fingerprints existed: compute it now
        try:
            raw = unpack_raw(existing["raw"])
            old = parse_form(raw) if existing.get("format") == "form" else json.loads(raw)
            known = body_fingerprint(old)
        except (ValueError, NotNormalisable):
            return True  # cannot tell: a duplicate is the safe reading (nothing is published twice)
    return known is None or known == fingerprint


def _conflict(existing: dict[str, Any], webhook: dict[str, Any]) -> dict[str, Any]:
    return {
        "hotmart_event_id": webhook["hotmart_event_id"],
        "hotmart_event": webhook["hotmart_event"],
        "kind": webhook["kind"],
        "received_at": webhook["received_at"],
        "first_received_at": existing.get("received_at"),
        "first_fingerprint": existing.get("fingerprint"),
        "fingerprint": webhook["fingerprint"],
        "format": webhook["format"],
        "raw": webhook["raw"],
    }


def _quarantine(
    store: DocumentStore,
    raw_body: bytes,
    reason: str,
    received_at: str,
    body: object = None,
    body_format: BodyFormat = "json",
) -> IntakeResult:
    """Keep what could not be understood, with why, for a person to look at; Hotmart still gets 2xx."""
    hotmart_id = body.get("id") if isinstance(body, dict) else None
    hotmart_event = body.get("event") if isinstance(body, dict) else None
    transaction, code, email = raw_lookup_fields(body)
    record = {
        "received_at": received_at,
        "reason": reason[:2000],
        "hotmart_event_id": str(hotmart_id)[:256] if hotmart_id is not None else None,
        "hotmart_event": str(hotmart_event)[:256] if hotmart_event is not None else None,
        "size_bytes": len(raw_body),
        "format": body_format,
        "status": "quarantined",
        "raw": pack_raw(raw_body),
        "transaction": transaction,
        "subscriber_code": code,
        "email_key": email_key(email),
    }
    created = store.create(QUARANTINE, quarantine_id(raw_body), record)
    log.warning("webhook.quarantined", reason=reason[:300], first_time=created)
    return IntakeResult(outcome="quarantined", reason=reason, event_id=record["hotmart_event_id"])


def reprocess_quarantined(
    store: DocumentStore, quarantine_doc_id: str, *, accept_tests: bool = False
) -> IntakeResult | None:
    """Run a quarantined body through today's normaliser (after an upgrade). None when no such record.

    Success stores it as if it had just arrived (with its original reception time) and marks the record
    ``reprocessed``; a body that still cannot be normalised stays quarantined with the new reason.
    """
    record = store.get(QUARANTINE, quarantine_doc_id)
    if record is None:
        return None
    if record.get("status") == "reprocessed":
        return IntakeResult(outcome="duplicate", event_id=record.get("hotmart_event_id"))
    if not record.get("raw"):
        return IntakeResult(outcome="quarantined", reason="body was too large to keep; cannot reprocess")
    raw_body = unpack_raw(record["raw"])
    body_format: BodyFormat = "form" if record.get("format") == "form" else "json"
    received = parse_time(record["received_at"])
    if body_format == "form":
        try:
            body: Any = parse_form(raw_body)
        except NotNormalisable as error:
            return _still_quarantined(store, quarantine_doc_id, error.reason)
    else:
        try:
            body = json.loads(raw_body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return _still_quarantined(store, quarantine_doc_id, f"body is not valid JSON: {error}")
    result = _normalise(body, body_format, received)
    if isinstance(result, str):
        return _still_quarantined(store, quarantine_doc_id, result)
    normalised, event = result
    outcome = _store_webhook(
        store, raw_body, body, normalised, event, record["received_at"], body_format, accept_tests
    )
    store.update(
        QUARANTINE,
        quarantine_doc_id,
        {"status": "reprocessed", "reprocessed_at": format_time(utc_now()), "outcome": outcome.outcome},
    )
    return outcome


def _still_quarantined(store: DocumentStore, doc_id: str, reason: str) -> IntakeResult:
    store.update(QUARANTINE, doc_id, {"reason": reason[:2000], "retried_at": format_time(utc_now())})
    return IntakeResult(outcome="quarantined", reason=reason)


def webhook_record(store: DocumentStore, hotmart_event_id: str) -> dict | None:
    """What an operator may see of a webhook: its progress, not the buyer's data."""
    webhook = store.get(WEBHOOKS, document_id(hotmart_event_id))
    if webhook is None:
        return None
    visible = (
        "hotmart_event_id",
        "hotmart_event",
        "kind",
        "received_at",
        "occurred_at",
        "event_id",
        "status",
    )
    return {key: webhook.get(key) for key in (*visible, "published_at", "message_id")}


LOOKUP_LIMIT = 100
_LOOKUP_QUARANTINE_FIELDS = (
    "received_at",
    "reason",
    "hotmart_event_id",
    "hotmart_event",
    "status",
    "outcome",
)


def lookup(
    store: DocumentStore,
    *,
    transaction: str | None = None,
    subscriber_code: str | None = None,
    email: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Webhooks and quarantined bodies of a purchase, a subscriber or a buyer, oldest first.

    By e-mail through its keyed hash (``LookupNotConfigured`` without a key): no e-mail is ever indexed.
    Records kept before these fields existed are not found by them (the event id still finds them).
    """
    if transaction:
        condition = Filter("transaction", "==", transaction)
    elif subscriber_code:
        condition = Filter("subscriber_code", "==", subscriber_code)
    elif email:
        condition = Filter("email_key", "==", required_email_key(email))
    else:
        raise ValueError("give a transaction, a subscriber code or an e-mail")
    webhooks = [
        {**webhook_record(store, doc.data["hotmart_event_id"]), "transaction": doc.data.get("transaction")}
        for doc in store.query(WEBHOOKS, [condition], limit=LOOKUP_LIMIT)
        if doc.data.get("hotmart_event_id")
    ]
    quarantined = [
        {"id": doc.id, **{k: doc.data.get(k) for k in _LOOKUP_QUARANTINE_FIELDS}}
        for doc in store.query(QUARANTINE, [condition], limit=LOOKUP_LIMIT)
    ]
    webhooks.sort(key=lambda w: w.get("received_at") or "")
    quarantined.sort(key=lambda q: q.get("received_at") or "")
    return {"webhooks": webhooks, "quarantine": quarantined}


def mark_webhooks_published(tx: Transaction, published: list[tuple[Document, str]]) -> None:
    """Outbox hook: record on each webhook when and as which message it was published."""
    now = format_time(utc_now())
    doc_ids = [document_id(entry.data["event"]["data"]["hotmart"]["event_id"]) for entry, _ in published]
    webhooks = {doc_id: tx.get(WEBHOOKS, doc_id) for doc_id in doc_ids}  # reads before writes
    for doc_id, (_entry, message_id) in zip(doc_ids, published, strict=True):
        webhook = webhooks[doc_id]
        if webhook is not None:
            tx.set(
                WEBHOOKS,
                doc_id,
                {**webhook, "status": "published", "published_at": now, "message_id": message_id},
            )
