"""HTTP entry point: ``POST /webhooks/hotmart``.

Answers:
- 401 when the ``X-HOTMART-HOTTOK`` header is missing or wrong (nothing is stored);
- 413 when the body is over 1 MiB;
- 200 ``accepted`` / ``duplicate`` / ``quarantined`` once the body is durably stored;
- 503 only when the store itself cannot be reached (nothing could be kept, so Hotmart must retry).
"""

from __future__ import annotations

from importlib import resources

import structlog
from flask import Blueprint, Flask, Response, g, jsonify, request
from prometheus_client import Counter

from coursebridge.ports import DocumentStore, StoreUnavailable
from coursebridge.runtime.auth import require_bearer
from ingest.domain.authenticity import is_authentic
from ingest.service_layer.intake import accept_webhook, webhook_record

log = structlog.get_logger(__name__)

HOTTOK_HEADER = "X-HOTMART-HOTTOK"
WEBHOOKS_RECEIVED = Counter(
    "coursebridge_ingest_webhooks_total",
    "Hotmart webhooks by outcome (accepted, duplicate, quarantined, unauthorized, too_large, ...)",
    ["outcome", "kind"],
)


def webhook_blueprint(store: DocumentStore, hottoks: tuple[str, ...], admin_token: str | None) -> Blueprint:
    blueprint = Blueprint("webhooks", __name__)

    @blueprint.post("/webhooks/hotmart")
    def receive_hotmart_webhook() -> tuple[Response, int]:
        if not is_authentic(request.headers.get(HOTTOK_HEADER), hottoks):
            WEBHOOKS_RECEIVED.labels("unauthorized", "").inc()
            return jsonify(error="unauthorized", message=f"missing or wrong {HOTTOK_HEADER} header"), 401
        raw_body = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
        try:
            result = accept_webhook(store, raw_body)
        except StoreUnavailable:
            WEBHOOKS_RECEIVED.labels("store_unavailable", "").inc()
            log.error("webhook.store_unavailable", action="answered 503 so Hotmart retries")
            return jsonify(error="unavailable", message="could not store the webhook; please retry"), 503
        WEBHOOKS_RECEIVED.labels(result.outcome, result.kind or "").inc()
        g.log_fields = {"outcome": result.outcome, "kind": result.kind}
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

    @blueprint.get("/openapi.yaml")
    def openapi_document() -> Response:
        text = resources.files("ingest").joinpath("openapi.yaml").read_text("utf-8")
        return Response(text, content_type="application/yaml")

    return blueprint


def count_too_large(app: Flask) -> None:
    @app.errorhandler(413)
    def too_large(_error: Exception) -> tuple[Response, int]:
        WEBHOOKS_RECEIVED.labels("too_large", "").inc()
        return jsonify(error="payload_too_large", message="webhook bodies are limited to 1 MiB"), 413


def create_app() -> Flask:
    """Gunicorn's entry point: ``ingest.entrypoints.api:create_app()``."""
    from ingest.bootstrap import build_api

    return build_api()
