"""HTTP entry point: ``POST /webhooks/hotmart`` (2.0 JSON webhooks and legacy 1.0 form postbacks).

Authenticity: the ``X-HOTMART-HOTTOK`` header; for a legacy 1.0 postback (a form, which has no header),
its ``hottok`` field. Both are compared in constant time. A ``hottok`` inside a 2.0 JSON body never
authenticates (2.0 always sends the header).

Answers:
- 401 when no hottok is presented or it is wrong (nothing is stored);
- 413 when the body is over 1 MiB;
- 200 ``accepted`` / ``duplicate`` / ``quarantined`` / ``conflict`` / ``test`` / ``recovered_earlier``
  once the body is durably stored;
- 503 only when the store itself cannot be reached (nothing could be kept, so Hotmart must retry).

Operators (bearer ``ADMIN_TOKEN``): ``GET /admin/quarantine``, ``GET /admin/quarantine/<id>``,
``POST /admin/quarantine/<id>/reprocess``, ``GET /admin/conflicts``, and
``GET /admin/lookup?transaction=|subscriber_code=|email=`` — the webhooks (with their status: pending,
published, duplicate-free, test, recovered_earlier) and quarantined bodies (with the reason) of a purchase,
a subscriber or a buyer; by e-mail through the keyed hash (503 without ``LOOKUP_HASH_KEY``).
"""

from __future__ import annotations

import json
import time
from importlib import resources

import structlog
from flask import Blueprint, Flask, Response, g, jsonify, request
from prometheus_client import Counter, Gauge

from coursebridge.events.envelope import parse_time
from coursebridge.lookup import LookupNotConfigured
from coursebridge.ports import Cursor, DocumentStore, Filter, StoreUnavailable
from coursebridge.runtime.auth import require_bearer
from ingest.domain.authenticity import is_authentic
from ingest.domain.hotmart import NotNormalisable
from ingest.domain.postback_v1 import looks_like_form, parse_form
from ingest.domain.records import unpack_raw
from ingest.domain.redaction import mask_personal
from ingest.service_layer.intake import (
    CONFLICTS,
    QUARANTINE,
    WEBHOOKS,
    accept_webhook,
    lookup,
    reprocess_quarantined,
    webhook_record,
)

log = structlog.get_logger(__name__)

HOTTOK_HEADER = "X-HOTMART-HOTTOK"
WEBHOOKS_RECEIVED = Counter(
    "coursebridge_ingest_webhooks_total",
    "Hotmart webhooks by outcome (accepted, duplicate, quarantined, unauthorized, too_large, ...)",
    ["outcome", "kind"],
)
WEBHOOK_LAST_RECEIVED = Gauge(
    "coursebridge_webhook_last_received_timestamp_seconds",
    "Unix time of the last authentic Hotmart webhook (silence while reconciliation finds sales: the URL "
    "was probably deactivated)",
    multiprocess_mode="max",
)
MAX_PAGE = 200


def webhook_blueprint(
    store: DocumentStore,
    hottoks: tuple[str, ...],
    admin_token: str | None,
    *,
    accept_test_events: bool = False,
) -> Blueprint:
    blueprint = Blueprint("webhooks", __name__)

    @blueprint.post("/webhooks/hotmart")
    def receive_hotmart_webhook() -> tuple[Response, int]:
        presented = request.headers.get(HOTTOK_HEADER)
        raw_body = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
        form = looks_like_form(raw_body, request.content_type)
        if not presented and form:
            presented = _form_hottok(raw_body)
        if not is_authentic(presented, hottoks):
            WEBHOOKS_RECEIVED.labels("unauthorized", "").inc()
            return jsonify(
                error="unauthorized", message=f"missing or wrong hottok ({HOTTOK_HEADER} header)"
            ), 401
        WEBHOOK_LAST_RECEIVED.set(time.time())
        try:
            result = accept_webhook(
                store,
                raw_body,
                body_format="form" if form else "json",
                accept_tests=accept_test_events,
            )
        except StoreUnavailable:
            WEBHOOKS_RECEIVED.labels("store_unavailable", "").inc()
            log.error("webhook.store_unavailable", action="answered 503 so Hotmart retries")
            return jsonify(error="unavailable", message="could not store the webhook; please retry"), 503
        WEBHOOKS_RECEIVED.labels(result.outcome, result.kind or "").inc()
        g.log_fields = {"outcome": result.outcome, "kind": result.kind, "format": "form" if form else "json"}
        body = {"status": result.outcome, "event_id": result.event_id}
        if result.reason:
            body["reason"] = result.reason
        return jsonify(body), 200

    @blueprint.get("/webhooks/hotmart/<path:hotmart_event_id>")
    @require_bearer(admin_token)
    def webhook_status(hotmart_event_id: str) -> tuple[Response, int]:
        """Did Hotmart's event X arrive, and has it been published? (operators, the sample sender)"""
        record = webhook_record(store, hotmart_event_id)
        if record is None:
            return jsonify(error="not_found", message="no webhook with that Hotmart event id"), 404
        return jsonify(record), 200

    @blueprint.get("/admin/lookup")
    @require_bearer(admin_token)
    def lookup_buyer() -> tuple[Response, int]:
        """What ingest knows of a purchase, a subscriber or a buyer (exactly one of the three)."""
        given = {k: (request.args.get(k) or "").strip() for k in ("transaction", "subscriber_code", "email")}
        given = {k: v[:320] for k, v in given.items() if v}
        if len(given) != 1:
            return jsonify(
                error="bad_request", message="give exactly one of transaction, subscriber_code or email"
            ), 400
        try:
            return jsonify(lookup(store, **given)), 200
        except LookupNotConfigured as error:
            return jsonify(error="lookup_not_configured", message=str(error)), 503

    @blueprint.get("/admin/quarantine")
    @require_bearer(admin_token)
    def list_quarantine() -> tuple[Response, int]:
        """Quarantined bodies, oldest first, without their content (``?after=<id>&limit=``,
        ``?status=quarantined`` for those still waiting)."""
        status = request.args.get("status")
        filters = [Filter("status", "==", status)] if status else []
        return jsonify(_page(store, QUARANTINE, _QUARANTINE_FIELDS, filters)), 200

    @blueprint.get("/admin/quarantine/<doc_id>")
    @require_bearer(admin_token)
    def inspect_quarantine(doc_id: str) -> tuple[Response, int]:
        """One quarantined body with the reason; personal fields are masked."""
        record = store.get(QUARANTINE, doc_id)
        if record is None:
            return jsonify(error="not_found", message="no quarantined body with that id"), 404
        visible = {key: record.get(key) for key in _QUARANTINE_FIELDS}
        visible["id"] = doc_id
        visible["body"] = _masked_body(record)
        return jsonify(visible), 200

    @blueprint.post("/admin/quarantine/<doc_id>/reprocess")
    @require_bearer(admin_token)
    def reprocess(doc_id: str) -> tuple[Response, int]:
        """Normalise a quarantined body again (after a normaliser upgrade) and, if it now works, keep it."""
        result = reprocess_quarantined(store, doc_id, accept_tests=accept_test_events)
        if result is None:
            return jsonify(error="not_found", message="no quarantined body with that id"), 404
        WEBHOOKS_RECEIVED.labels("reprocessed_" + result.outcome, result.kind or "").inc()
        body = {"status": result.outcome, "event_id": result.event_id, "kind": result.kind}
        if result.reason:
            body["reason"] = result.reason
        return jsonify(body), 200

    @blueprint.get("/admin/conflicts")
    @require_bearer(admin_token)
    def list_conflicts() -> tuple[Response, int]:
        """Event ids that arrived again with a different body (neither copy is lost)."""
        return jsonify(_page(store, CONFLICTS, _CONFLICT_FIELDS)), 200

    @blueprint.get("/openapi.yaml")
    def openapi_document() -> Response:
        text = resources.files("ingest").joinpath("openapi.yaml").read_text("utf-8")
        return Response(text, content_type="application/yaml")

    return blueprint


_QUARANTINE_FIELDS = (
    "received_at",
    "reason",
    "hotmart_event_id",
    "hotmart_event",
    "size_bytes",
    "format",
    "status",
    "reprocessed_at",
    "outcome",
)
_CONFLICT_FIELDS = (
    "hotmart_event_id",
    "hotmart_event",
    "kind",
    "first_received_at",
    "received_at",
    "first_fingerprint",
    "fingerprint",
    "format",
)


def _form_hottok(raw_body: bytes) -> str | None:
    """A 1.0 postback's own hottok field (2.0 JSON bodies authenticate by the header only)."""
    try:
        return parse_form(raw_body).get("hottok")
    except NotNormalisable:
        return None


def _page(store: DocumentStore, kind: str, fields: tuple[str, ...], filters: list | None = None) -> dict:
    try:
        limit = max(1, min(MAX_PAGE, int(request.args.get("limit", "50"))))
    except ValueError:
        limit = 50
    after = request.args.get("after")
    docs = store.query(kind, filters or [], limit=limit, start_after=Cursor(after) if after else None)
    items = [{"id": doc.id, **{key: doc.data.get(key) for key in fields}} for doc in docs]
    return {"items": items, "next_after": docs[-1].id if len(docs) == limit else None}


def _masked_body(record: dict) -> object:
    if not record.get("raw"):
        return None
    raw = unpack_raw(record["raw"])
    try:
        body: object = parse_form(raw) if record.get("format") == "form" else json.loads(raw)
    except (ValueError, NotNormalisable):
        return {"unparsable_text": "[withheld: may hold personal data]", "size_bytes": len(raw)}
    return mask_personal(body)


def restore_last_received(store: DocumentStore) -> None:
    """After a restart the gauge starts from the newest stored webhook, so silence is not reset."""
    try:
        newest = store.query(WEBHOOKS, order_by="received_at", descending=True, limit=1)
    except Exception as error:  # the first webhook will set it; readiness reports the store anyway
        log.warning("webhook.last_received_unknown", error=type(error).__name__)
        return
    if newest and newest[0].data.get("received_at"):
        WEBHOOK_LAST_RECEIVED.set(parse_time(newest[0].data["received_at"]).timestamp())


def count_too_large(app: Flask) -> None:
    @app.errorhandler(413)
    def too_large(_error: Exception) -> tuple[Response, int]:
        WEBHOOKS_RECEIVED.labels("too_large", "").inc()
        return jsonify(error="payload_too_large", message="webhook bodies are limited to 1 MiB"), 413


def create_app() -> Flask:
    """Gunicorn's entry point: ``ingest.entrypoints.api:create_app()``."""
    from ingest.bootstrap import build_api

    return build_api()
