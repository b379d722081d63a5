"""Accept one authentic webhook body: store it with its outbox entry, or quarantine it with the reason.

Nothing here waits on Pub/Sub. The webhook document and its outbox entry are written in one transaction,
so either both exist (and the relay will publish) or neither does (and the caller answers 503 so Hotmart
retries). A resend with the same Hotmart event id finds the webhook document and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from coursebridge.events import Event, InvalidEvent, new_event
from coursebridge.events.envelope import format_time, utc_now
from coursebridge.events.payments import register_payment_contracts
from coursebridge.outbox import Outbox
from coursebridge.ports import Document, DocumentStore, Transaction
from coursebridge.runtime.logging import bind_correlation
from coursebridge.topology import PAYMENTS
from ingest.domain.hotmart import NormalisedEvent, NotNormalisable, normalise
from ingest.domain.records import cloud_event_id, document_id, pack_raw, quarantine_id, redact_hottok

log = structlog.get_logger(__name__)
register_payment_contracts()

WEBHOOKS = "webhooks"
QUARANTINE = "quarantine"
EVENT_SOURCE = "coursebridge/ingest"

Outcome = Literal["accepted", "duplicate", "quarantined"]


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


def accept_webhook(store: DocumentStore, raw_body: bytes, *, now: datetime | None = None) -> IntakeResult:
    """Store ``raw_body`` durably; raises ``StoreUnavailable`` when that is impossible right now."""
    received_at = format_time(now or utc_now())
    raw_body = redact_hottok(raw_body)
    try:
        body = json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _quarantine(store, raw_body, f"body is not valid JSON: {error}", received_at)
    try:
        normalised = normalise(body)
        event = payment_event(normalised)
    except NotNormalisable as error:
        return _quarantine(store, raw_body, str(error), received_at, body)
    except InvalidEvent as error:  # a normaliser bug must not cost a webhook: keep it for a person
        log.error("webhook.normalised_event_invalid", error=str(error)[:300])
        return _quarantine(
            store, raw_body, f"normalised event breaks its contract: {error}", received_at, body
        )
    bind_correlation(normalised.ordering_key)  # the rest of this request's log lines follow the purchase

    doc_id = document_id(normalised.event_id)
    packed = pack_raw(raw_body)
    webhook = {
        "hotmart_event_id": normalised.event_id,
        "hotmart_event": normalised.event_name,
        "kind": normalised.kind,
        "received_at": received_at,
        "occurred_at": format_time(normalised.occurred_at),
        "ordering_key": normalised.ordering_key,
        "event_id": event.id,
        "status": "pending",
        "raw": packed,
        "raw_omitted": None if packed is not None else "body too large to keep whole; normalised event kept",
    }

    def store_once(tx: Transaction) -> bool:
        if tx.get(WEBHOOKS, doc_id) is not None:
            return False
        tx.create(WEBHOOKS, doc_id, webhook)
        Outbox(store).add(tx, PAYMENTS, event, normalised.ordering_key)
        return True

    created = store.transaction(store_once)
    outcome: Outcome = "accepted" if created else "duplicate"
    log.debug(  # the request's access line carries the outcome; this one only adds ids
        "webhook." + outcome, hotmart_event=normalised.event_name, kind=normalised.kind, event_id=event.id
    )
    return IntakeResult(outcome=outcome, event_id=normalised.event_id, kind=normalised.kind)


def _quarantine(
    store: DocumentStore, raw_body: bytes, reason: str, received_at: str, body: object = None
) -> IntakeResult:
    """Keep what could not be understood, with why, for a person to look at; Hotmart still gets 2xx."""
    hotmart_id = body.get("id") if isinstance(body, dict) else None
    hotmart_event = body.get("event") if isinstance(body, dict) else None
    record = {
        "received_at": received_at,
        "reason": reason[:2000],
        "hotmart_event_id": str(hotmart_id)[:256] if hotmart_id is not None else None,
        "hotmart_event": str(hotmart_event)[:256] if hotmart_event is not None else None,
        "size_bytes": len(raw_body),
        "raw": pack_raw(raw_body),
    }
    created = store.create(QUARANTINE, quarantine_id(raw_body), record)
    log.warning("webhook.quarantined", reason=reason[:300], first_time=created)
    return IntakeResult(outcome="quarantined", reason=reason, event_id=record["hotmart_event_id"])


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
