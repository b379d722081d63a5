"""Dead letters a service owns: kept in its own collection, listed, replayed once, discarded.

A message its consumer gave up on lands on the subscription's dead-letter topic and waits in the hold
subscription (``<subscription>.dead-letter.hold``). Reading a hold needs bus tooling (gcloud on GCP, the
SQLite file locally) and replaying it by republishing sends a poison message round the loop again. So each
service's worker runs a **keeper** on its holds: it stores each message in the ``deadletters`` kind of the
service's own collection (why, after how many attempts, first and last failure, the message) and only then
acks it — on both backends the same. Operators then list / show / **replay** (the service's own handler
runs the stored message once, in the API process; success marks it ``replayed``, a failure keeps it held
with the new reason) / **discard** (kept as ``discarded``, with who and when).

Nothing here republishes: a replay can neither loop nor reach the other subscribers of the topic.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from flask import Blueprint, Response, jsonify, request

from coursebridge.events import Event
from coursebridge.events.envelope import format_time, utc_now
from coursebridge.ports import (
    DEAD_LETTER_REASON_ATTRIBUTE,
    Cursor,
    Delivery,
    DocumentStore,
    EventHandler,
    Filter,
    Transaction,
)
from coursebridge.runtime.auth import require_bearer
from coursebridge.topology import TOPOLOGY, Topology

log = structlog.get_logger(__name__)

DEADLETTERS = "deadletters"
HELD, REPLAYED, DISCARDED = "held", "replayed", "discarded"
STATUSES = (HELD, REPLAYED, DISCARDED)
ACTOR_HEADER = "X-CourseBridge-Actor"
SOURCE_COUNT_ATTRIBUTE = "CloudPubSubDeadLetterSourceDeliveryCount"
MAX_PAGE = 200
_PERSONAL = re.compile(r"(e-?mail|name|document|doc|phone|cpf|cnpj|address|zip|ip)$", re.IGNORECASE)


def deadletter_id(subscription: str, event_id: str) -> str:
    """One document per (subscription, event): the same message dead-lettered again updates it."""
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{subscription}--{event_id}")
    if len(safe) <= 200 and not safe.startswith("__"):
        return safe
    return "sha256-" + hashlib.sha256(f"{subscription}--{event_id}".encode()).hexdigest()


# --- the keeper (worker side) ---------------------------------------------------------------------------


def keeper(store: DocumentStore, subscription: str, clock: Callable[[], str] | None = None) -> EventHandler:
    """The handler of ``subscription``'s hold: store the message, then (by returning) ack it."""
    now_text = clock or (lambda: format_time(utc_now()))

    def keep(event: Event, delivery: Delivery) -> None:
        attributes = dict(delivery.attributes or {})
        reason = attributes.get(DEAD_LETTER_REASON_ATTRIBUTE) or "dead-lettered (no reason recorded)"
        try:
            attempts = int(attributes.get(SOURCE_COUNT_ATTRIBUTE) or 0)
        except ValueError:
            attempts = 0
        now = now_text()
        doc_id = deadletter_id(subscription, event.id)

        def work(tx: Transaction) -> bool:
            existing = tx.get(DEADLETTERS, doc_id)
            if existing is not None and existing.get("last_message_id") == delivery.message_id:
                return False  # the hold delivered the same message again: already kept
            doc = existing or {
                "subscription": subscription,
                "event_id": event.id,
                "event_type": event.type,
                "first_failure_at": now,
                "times_dead_lettered": 0,
                "attempts": 0,
            }
            doc.update(
                {
                    "status": HELD,
                    "reason": reason[:1000],
                    "last_failure_at": now,
                    "attempts": int(doc.get("attempts") or 0) + attempts,
                    "times_dead_lettered": int(doc.get("times_dead_lettered") or 0) + 1,
                    "ordering_key": delivery.ordering_key,
                    "last_message_id": delivery.message_id,
                    "message": event.to_json(),
                }
            )
            tx.set(DEADLETTERS, doc_id, doc)
            return True

        if store.transaction(work):
            log.warning(
                "deadletter.kept",
                subscription=subscription,
                event_type=event.type,
                event_id=event.id,
                reason=reason[:300],
            )

    return keep


def keepers(
    store: DocumentStore, subscriptions: Iterable[str], topology: Topology = TOPOLOGY
) -> dict[str, EventHandler]:
    """``{hold subscription: keeper}`` for a worker's subscriptions."""
    return {topology.subscription(name).hold_subscription: keeper(store, name) for name in subscriptions}


# --- operators (API side) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOutcome:
    id: str
    outcome: str  # replayed | failed | not_held | not_found | no_handler
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        body = {"id": self.id, "outcome": self.outcome}
        if self.reason:
            body["reason"] = self.reason
        return body


def summary(doc_id: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    message = doc.get("message") or {}
    data = message.get("data") or {}
    return {
        "id": doc_id,
        "subscription": doc.get("subscription"),
        "event_type": doc.get("event_type"),
        "event_id": doc.get("event_id"),
        "status": doc.get("status"),
        "reason": doc.get("reason"),
        "attempts": doc.get("attempts"),
        "times_dead_lettered": doc.get("times_dead_lettered"),
        "first_failure_at": doc.get("first_failure_at"),
        "last_failure_at": doc.get("last_failure_at"),
        "transaction": data.get("transaction"),
        "subscriber_code": (data.get("subscription") or {}).get("subscriber_code")
        or data.get("subscriber_code"),
        "replayed_at": doc.get("replayed_at"),
        "replay_outcome": doc.get("replay_outcome"),
        "discarded_at": doc.get("discarded_at"),
        "actor": doc.get("actor"),
    }


def mask_personal(value: Any, key: str = "") -> Any:
    """What an operator screen shows of a message: its shape and ids, not the buyer's data."""
    if isinstance(value, dict):
        return {k: mask_personal(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_personal(v, key) for v in value]
    if isinstance(value, str) and _PERSONAL.search(key) and not key.endswith("_id"):
        if "@" in value:
            local, _, domain = value.partition("@")
            return f"{local[:2]}***@{domain}"
        return "***"
    return value


def list_deadletters(
    store: DocumentStore, *, status: str | None = HELD, limit: int = 50, after: str | None = None
) -> dict[str, Any]:
    filters = [Filter("status", "==", status)] if status else []
    docs = store.query(DEADLETTERS, filters, limit=limit, start_after=Cursor(after) if after else None)
    return {
        "items": [summary(doc.id, doc.data) for doc in docs],
        "next_after": docs[-1].id if len(docs) == limit else None,
    }


def show_deadletter(store: DocumentStore, doc_id: str) -> dict[str, Any] | None:
    doc = store.get(DEADLETTERS, doc_id)
    if doc is None:
        return None
    return {**summary(doc_id, doc), "message": mask_personal(doc.get("message") or {})}


def replay(
    store: DocumentStore,
    doc_id: str,
    handlers: Mapping[str, EventHandler],
    *,
    actor: str = "admin-api",
) -> ReplayOutcome:
    """Run the stored message through its subscription's handler once.

    The handlers are the worker's own (idempotent, deduplicating by event id), so a replay of a message
    that meanwhile succeeded changes nothing. A failure leaves the letter held with the new reason.
    """
    doc = store.get(DEADLETTERS, doc_id)
    if doc is None:
        return ReplayOutcome(doc_id, "not_found")
    if doc.get("status") != HELD:
        return ReplayOutcome(doc_id, "not_held", f"already {doc.get('status')}")
    handler = handlers.get(doc.get("subscription") or "")
    if handler is None:
        return ReplayOutcome(doc_id, "no_handler", f"no handler for {doc.get('subscription')}")
    event = Event.from_json(doc["message"])
    replays = int(doc.get("replays") or 0) + 1
    delivery = Delivery(
        doc["subscription"], f"replay-{replays}", int(doc.get("attempts") or 0) + 1, doc.get("ordering_key")
    )
    now = format_time(utc_now())
    try:
        handler(event, delivery)
    except Exception as error:
        reason = f"replay failed: {type(error).__name__}: {error}"[:1000]
        store.update(
            DEADLETTERS,
            doc_id,
            {"reason": reason, "last_failure_at": now, "replays": replays, "replay_outcome": "failed"},
        )
        log.warning("deadletter.replay_failed", deadletter_id=doc_id, error=type(error).__name__)
        return ReplayOutcome(doc_id, "failed", reason)
    store.update(
        DEADLETTERS,
        doc_id,
        {
            "status": REPLAYED,
            "replayed_at": now,
            "replays": replays,
            "replay_outcome": "handled",
            "actor": actor,
        },
    )
    log.info("deadletter.replayed", deadletter_id=doc_id, actor=actor)
    return ReplayOutcome(doc_id, "replayed")


def discard(store: DocumentStore, doc_id: str, *, actor: str = "admin-api") -> bool:
    """Give up on a letter on purpose: it stays listed as ``discarded``, with who and when."""

    def work(tx: Transaction) -> bool:
        doc = tx.get(DEADLETTERS, doc_id)
        if doc is None or doc.get("status") != HELD:
            return False
        tx.set(
            DEADLETTERS,
            doc_id,
            {**doc, "status": DISCARDED, "discarded_at": format_time(utc_now()), "actor": actor},
        )
        return True

    done = store.transaction(work)
    if done:
        log.info("deadletter.discarded", deadletter_id=doc_id, actor=actor)
    return done


def replay_all(
    store: DocumentStore,
    handlers: Mapping[str, EventHandler],
    *,
    subscription: str | None = None,
    max_messages: int | None = None,
    actor: str = "replay-cli",
) -> list[ReplayOutcome]:
    """Every held letter (of ``subscription``) at most once in this run: the ids are taken first."""
    filters = [Filter("status", "==", HELD)]
    if subscription:
        filters.append(Filter("subscription", "==", subscription))
    ids = [doc.id for doc in store.scan(DEADLETTERS, filters)]
    if max_messages is not None:
        ids = ids[:max_messages]
    return [replay(store, doc_id, handlers, actor=actor) for doc_id in ids]


# --- HTTP -------------------------------------------------------------------------------------------------


def _actor() -> str:
    actor = (request.headers.get(ACTOR_HEADER) or "").strip()
    return actor[:200] if actor else "admin-api"


def deadletter_blueprint(
    store: DocumentStore, admin_token: str | None, handlers: Mapping[str, EventHandler]
) -> Blueprint:
    """``GET /admin/deadletters[?status=held|replayed|discarded|all]``, ``GET /admin/deadletters/<id>``,
    ``POST /admin/deadletters/<id>/replay``, ``POST /admin/deadletters/<id>/discard`` (bearer)."""
    blueprint = Blueprint("deadletters", __name__)
    guarded = require_bearer(admin_token)

    @blueprint.get("/admin/deadletters")
    @guarded
    def list_view() -> tuple[Response, int]:
        status = request.args.get("status", HELD)
        if status not in (*STATUSES, "all"):
            return jsonify(error="bad_request", message=f"status: one of {', '.join(STATUSES)}, all"), 400
        try:
            limit = max(1, min(MAX_PAGE, int(request.args.get("limit", "50"))))
        except ValueError:
            limit = 50
        page = list_deadletters(
            store, status=None if status == "all" else status, limit=limit, after=request.args.get("after")
        )
        return jsonify(page), 200

    @blueprint.get("/admin/deadletters/<doc_id>")
    @guarded
    def show_view(doc_id: str) -> tuple[Response, int]:
        shown = show_deadletter(store, doc_id)
        if shown is None:
            return jsonify(error="not_found", message="no dead letter with that id"), 404
        return jsonify(shown), 200

    @blueprint.post("/admin/deadletters/<doc_id>/replay")
    @guarded
    def replay_view(doc_id: str) -> tuple[Response, int]:
        outcome = replay(store, doc_id, handlers, actor=_actor())
        status = {"not_found": 404, "not_held": 409, "no_handler": 409}.get(outcome.outcome, 200)
        return jsonify(outcome.to_json()), status

    @blueprint.post("/admin/deadletters/<doc_id>/discard")
    @guarded
    def discard_view(doc_id: str) -> tuple[Response, int]:
        if store.get(DEADLETTERS, doc_id) is None:
            return jsonify(error="not_found", message="no dead letter with that id"), 404
        if not discard(store, doc_id, actor=_actor()):
            return jsonify(error="conflict", message="only a held dead letter can be discarded"), 409
        return jsonify(id=doc_id, outcome="discarded"), 200

    return blueprint
