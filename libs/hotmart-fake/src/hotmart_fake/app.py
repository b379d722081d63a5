"""The fake Hotmart's HTTP face: Hotmart's endpoints plus ``/_fake/`` controls for tests and ``make run``.

Hotmart endpoints:
- ``POST /security/oauth/token?grant_type=client_credentials&client_id=…&client_secret=…`` with
  ``Authorization: Basic base64(id:secret)``;
- ``GET /payments/api/v1/sales/history`` and ``GET /payments/api/v1/subscriptions`` (bearer token).

Controls (no auth; the fake listens on 127.0.0.1 only): ``POST /_fake/sales``, ``POST /_fake/subscriptions``,
``POST /_fake/sales/<transaction>/status``, ``POST /_fake/subscriptions/<code>/cancel``,
``POST /_fake/send-webhooks``, ``GET /_fake/state``, ``POST /_fake/reset``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Iterable
from typing import Any

import requests
from flask import Flask, Response, jsonify, request

from hotmart_fake.state import DAY_MS, DEFAULT_STATUSES, HotmartState, Sale, Subscription, now_ms

STATE_EXTENSION = "hotmart_fake"
DEFAULT_PAGE = 50
MAX_PAGE = 500
SALE_STATUSES = frozenset(
    {
        "APPROVED",
        "BLOCKED",
        "CANCELLED",
        "CHARGEBACK",
        "COMPLETE",
        "EXPIRED",
        "NO_FUNDS",
        "OVERDUE",
        "PARTIALLY_REFUNDED",
        "PRE_ORDER",
        "PRINTED_BILLET",
        "PROCESSING_TRANSACTION",
        "PROTESTED",
        "REFUNDED",
        "STARTED",
        "UNDER_ANALISYS",
        "WAITING_PAYMENT",
    }
)
SUBSCRIPTION_STATUSES = frozenset(
    {
        "ACTIVE",
        "INACTIVE",
        "DELAYED",
        "CANCELLED_BY_CUSTOMER",
        "CANCELLED_BY_SELLER",
        "CANCELLED_BY_ADMIN",
        "STARTED",
        "OVERDUE",
    }
)
FAKE_CLIENT_ID = "fake-client-id"
FAKE_CLIENT_SECRET = "fake-client-secret"  # noqa: S105 - the fake's public development credential


def error(status: int, code: str, description: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(error=code, error_description=description, error_uri=None)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def create_app(
    client_id: str = FAKE_CLIENT_ID,
    client_secret: str = FAKE_CLIENT_SECRET,
    *,
    state: HotmartState | None = None,
    **state_options: Any,
) -> Flask:
    app = Flask("hotmart_fake")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    state = state or HotmartState(client_id, client_secret, **state_options)
    app.extensions[STATE_EXTENSION] = state

    def limited(endpoint: str, work: Callable[[], Response]) -> Response:
        allowed, remaining, reset = state.count_call(endpoint)
        headers = {
            "RateLimit-Limit": str(state.rate_limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(max(1, round(reset))),
            "X-RateLimit-Limit-Minute": str(state.rate_limit),
            "X-RateLimit-Remaining-Minute": str(remaining),
        }
        if not allowed:
            return error(429, "too_many_requests", "rate limit exceeded", headers)
        response = work()
        response.headers.update(headers)
        return response

    @app.post("/security/oauth/token")
    def token() -> Response:
        def work() -> Response:
            if request.args.get("grant_type") != "client_credentials":
                return error(400, "invalid_parameter", "grant_type must be client_credentials")
            basic = request.headers.get("Authorization", "")
            expected = base64.b64encode(f"{state.client_id}:{state.client_secret}".encode()).decode()
            ok = (
                basic.startswith("Basic ")
                and hmac.compare_digest(basic[6:].strip(), expected)
                and hmac.compare_digest(request.args.get("client_id", ""), state.client_id)
                and hmac.compare_digest(request.args.get("client_secret", ""), state.client_secret)
            )
            if not ok:
                return error(401, "unauthorized_client", "bad client credentials")
            return jsonify(state.issue_token())

        return limited("token", work)

    def authorised(endpoint: str, work: Callable[[], Response]) -> Response:
        def checked() -> Response:
            header = request.headers.get("Authorization", "")
            verdict = state.token_state(header[7:] if header.startswith("Bearer ") else None)
            if verdict == "expired":
                return error(401, "token_expired", "the access token expired")
            if verdict != "valid":
                return error(401, "invalid_token", "missing or unknown access token")
            return work()

        return limited(endpoint, checked)

    @app.get("/payments/api/v1/sales/history")
    def sales_history() -> Response:
        return authorised("sales/history", _sales_history)

    def _sales_history() -> Response:
        args = request.args
        statuses = args.getlist("transaction_status")
        bad = [s for s in statuses if s not in SALE_STATUSES]
        if bad:
            return error(400, "invalid_value_parameter", f"unknown transaction_status {bad[0]}")
        transaction = args.get("transaction")
        if not statuses and not transaction:
            statuses = list(DEFAULT_STATUSES)  # Hotmart's default: approved and complete only
        start, end = _ms(args.get("start_date")), _ms(args.get("end_date"))
        with state.lock:
            sales = sorted(state.sales.values(), key=lambda s: (s.order_date, s.transaction))
        items = [
            sale.rest_item()
            for sale in sales
            if (transaction is None or sale.transaction == transaction)
            and (not statuses or sale.status in statuses)
            and (start is None or sale.order_date >= start)
            and (end is None or sale.order_date <= end)
            and (args.get("product_id") is None or str(sale.product_id) == args.get("product_id"))
            and (args.get("buyer_email") is None or sale.buyer_email == args.get("buyer_email"))
        ]
        return _paged(items)

    @app.get("/payments/api/v1/subscriptions")
    def subscriptions() -> Response:
        return authorised("subscriptions", _subscriptions)

    def _subscriptions() -> Response:
        args = request.args
        statuses = args.getlist("status")
        bad = [s for s in statuses if s not in SUBSCRIPTION_STATUSES]
        if bad:
            return error(400, "invalid_parameter", f"unknown status {bad[0]}")
        accession_from = _ms(args.get("accession_date"))
        if accession_from is None:
            accession_from = now_ms() - 30 * DAY_MS  # Hotmart's documented default
        accession_to = _ms(args.get("end_accession_date"))
        cancel_from, cancel_to = _ms(args.get("cancelation_date")), _ms(args.get("end_cancelation_date"))
        with state.lock:
            subs = sorted(state.subscriptions.values(), key=lambda s: (s.accession_date, s.subscriber_code))

        def keep(sub: Subscription) -> bool:
            checks: Iterable[bool] = (
                not statuses or sub.status in statuses,
                sub.accession_date >= accession_from,
                accession_to is None or sub.accession_date <= accession_to,
                cancel_from is None or (sub.end_accession_date or -1) >= cancel_from,
                cancel_to is None
                or (sub.end_accession_date is not None and sub.end_accession_date <= cancel_to),
                args.get("product_id") is None or str(sub.product_id) == args.get("product_id"),
                args.get("subscriber_code") is None or sub.subscriber_code == args.get("subscriber_code"),
                args.get("subscriber_email") is None or sub.email == args.get("subscriber_email"),
                args.get("transaction") is None or sub.transaction == args.get("transaction"),
            )
            return all(checks)

        return _paged([sub.rest_item() for sub in subs if keep(sub)])

    # --- controls -------------------------------------------------------------------------------------

    @app.post("/_fake/sales")
    def add_sales() -> tuple[Response, int]:
        entries = request.get_json(force=True)
        for entry in entries if isinstance(entries, list) else [entries]:
            state.add_sale(Sale(**entry))
        return jsonify(sales=len(state.sales)), 201

    @app.post("/_fake/subscriptions")
    def add_subscriptions() -> tuple[Response, int]:
        entries = request.get_json(force=True)
        for entry in entries if isinstance(entries, list) else [entries]:
            state.add_subscription(Subscription(**entry))
        return jsonify(subscriptions=len(state.subscriptions)), 201

    @app.post("/_fake/sales/<transaction>/status")
    def change_status(transaction: str) -> tuple[Response, int]:
        sale = state.sales.get(transaction)
        if sale is None:
            return jsonify(error="not_found"), 404
        body = request.get_json(force=True)
        sale.set_status(body["status"], body.get("at"))
        return jsonify(sale.rest_item()), 200

    @app.post("/_fake/subscriptions/<code>/cancel")
    def cancel(code: str) -> tuple[Response, int]:
        sub = state.subscriptions.get(code)
        if sub is None:
            return jsonify(error="not_found"), 404
        body = request.get_json(silent=True) or {}
        sub.cancel(body.get("at"), body.get("status", "CANCELLED_BY_CUSTOMER"))
        return jsonify(sub.rest_item()), 200

    @app.post("/_fake/send-webhooks")
    def send_webhooks() -> tuple[Response, int]:
        """Send (late) the 2.0 webhooks of the held sales: ``{"url", "hottok", "transactions"?}``."""
        body = request.get_json(force=True)
        results = deliver(
            state.webhook_bodies(body.get("transactions"), body.get("subscriber_codes")),
            body["url"],
            body["hottok"],
        )
        return jsonify(sent=results), 200

    @app.get("/_fake/state")
    def show_state() -> Response:
        return jsonify(
            sales=len(state.sales),
            subscriptions=len(state.subscriptions),
            calls=dict(state.calls),
            throttled=state.throttled,
            max_calls_in_window=state.max_calls_in_window,
            rate_limit=state.rate_limit,
            rate_window_seconds=state.rate_window_seconds,
        )

    @app.post("/_fake/reset")
    def reset() -> Response:
        state.reset()
        return jsonify(status="reset")

    return app


def deliver(bodies: list[dict[str, Any]], url: str, hottok: str) -> list[dict[str, Any]]:
    """POST each body as Hotmart does (JSON, ``X-HOTMART-HOTTOK``); one result per body."""
    results = []
    with requests.Session() as session:
        for body in bodies:
            try:
                response = session.post(url, json=body, headers={"X-HOTMART-HOTTOK": hottok}, timeout=10)
                status: int | str = response.status_code
            except requests.RequestException as failure:
                status = type(failure).__name__
            results.append({"id": body["id"], "event": body["event"], "status": status})
    return results


def _ms(value: str | None) -> int | None:
    if value is None or not value.strip().lstrip("-").isdigit():
        return None
    number = int(value)
    return number * 1000 if abs(number) < 10**11 else number  # 10-digit values are seconds


def _paged(items: list[dict[str, Any]]) -> Response:
    try:
        size = int(request.args.get("max_results", DEFAULT_PAGE))
    except ValueError:
        return error(400, "invalid_value_parameter", "max_results must be a number")
    size = max(1, min(MAX_PAGE, size))  # larger values are silently reduced
    token = request.args.get("page_token")
    offset = 0
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("o:"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return error(400, "invalid_token", "bad page_token")
    page = items[offset : offset + size]
    info: dict[str, Any] = {"total_results": len(items), "results_per_page": size}
    if offset + size < len(items):
        info["next_page_token"] = base64.urlsafe_b64encode(f"o:{offset + size}".encode()).decode()
    if offset > 0:
        info["prev_page_token"] = base64.urlsafe_b64encode(f"o:{max(0, offset - size)}".encode()).decode()
    return jsonify(items=page, page_info=info)
