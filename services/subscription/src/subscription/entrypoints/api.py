"""HTTP entry point of the subscription service (bearer ``ADMIN_TOKEN`` on every route but the probes).

- ``POST /tasks/sweep``: apply every time-based transition due now; answers the sweep report.
- ``GET /subscriptions/<subscriber_code>``: each access of that subscriber (state, paid-through date,
  grace end, plan, history of transitions); 404 when the subscriber is unknown.
- ``GET /admin/accesses?email=`` / ``?subscriber_code=``: a buyer's accesses (possibly none), found by the
  keyed hash of the e-mail (``LOOKUP_HASH_KEY``; 503 when it is not configured).
- ``/admin/deadletters``: dead letters of the service's subscriptions (``coursebridge.deadletters``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from flask import Blueprint, Flask, Response, g, jsonify, request

from coursebridge.lookup import LookupNotConfigured
from coursebridge.ports import DocumentStore
from coursebridge.runtime.auth import require_bearer
from subscription.domain.access import DEFAULT_MAX_SKEW
from subscription.service_layer.accesses import accesses_by_email, subscriber_accesses, sweep


def subscription_blueprint(
    store: DocumentStore,
    admin_token: str | None,
    clock: Callable[[], datetime],
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> Blueprint:
    blueprint = Blueprint("subscription", __name__)

    @blueprint.post("/tasks/sweep")
    @require_bearer(admin_token)
    def run_sweep() -> tuple[Response, int]:
        report = sweep(store, clock(), max_skew=max_skew)
        g.log_fields = {"examined": report.examined, "changed": report.changed}
        return jsonify(report.to_json()), 200

    @blueprint.get("/subscriptions/<path:subscriber_code>")
    @require_bearer(admin_token)
    def read_subscriber(subscriber_code: str) -> tuple[Response, int]:
        accesses = subscriber_accesses(store, subscriber_code)
        if not accesses:
            return jsonify(error="not_found", message="no subscription with that subscriber code"), 404
        return jsonify(subscriber_code=subscriber_code, accesses=accesses), 200

    @blueprint.get("/admin/accesses")
    @require_bearer(admin_token)
    def find_accesses() -> tuple[Response, int]:
        email = (request.args.get("email") or "").strip()
        code = (request.args.get("subscriber_code") or "").strip()
        if bool(email) == bool(code):
            return jsonify(error="bad_request", message="give exactly one of email or subscriber_code"), 400
        if code:
            return jsonify(accesses=subscriber_accesses(store, code)), 200
        if "@" not in email or len(email) > 320:
            return jsonify(error="bad_request", message="email must be an e-mail address"), 400
        try:
            return jsonify(accesses=accesses_by_email(store, email)), 200
        except LookupNotConfigured as error:
            return jsonify(error="lookup_not_configured", message=str(error)), 503

    return blueprint


def create_app() -> Flask:
    """Gunicorn's entry point: ``subscription.entrypoints.api:create_app()``."""
    from subscription.bootstrap import build_api

    return build_api()
