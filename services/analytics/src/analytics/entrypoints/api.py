"""HTTP entry point: revenue JSON and the dashboard.

- ``GET /revenue/daily?from=YYYY-MM-DD&to=YYYY-MM-DD[&currency=BRL]`` (bearer ``ADMIN_TOKEN``): rows of
  ``revenue_daily_totals``; 400 on bad dates, ``from`` after ``to`` or a range over 366 days.
- ``GET /views/<name>`` (bearer): the rows of one monthly view, for the dashboard's charts.
- ``GET /dashboard`` and ``/dashboard/static/<file>``: the page and its scripts, served from the package
  (no CDN, works offline). The page holds no data; it asks for the token once, keeps it in the tab's
  ``sessionStorage`` and sends it as a bearer header, so the token never appears in a URL or a log.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any

from flask import Blueprint, Flask, Response, abort, jsonify, request

from analytics.ports import Warehouse, WarehouseUnavailable
from coursebridge.runtime.auth import require_bearer

MAX_RANGE_DAYS = 366
DASHBOARD_VIEWS = ("mrr_monthly", "churn_monthly", "refund_rates_monthly")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "charts.js": "text/javascript"}


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _bad_request(message: str) -> tuple[Response, int]:
    return jsonify(error="bad_request", message=message), 400


def _parse_day(name: str) -> date | None:
    text = request.args.get(name, "")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def analytics_blueprint(warehouse: Warehouse, admin_token: str | None) -> Blueprint:
    blueprint = Blueprint("analytics", __name__)

    @blueprint.get("/revenue/daily")
    @require_bearer(admin_token)
    def revenue_daily() -> tuple[Response, int]:
        start, end = _parse_day("from"), _parse_day("to")
        if start is None or end is None:
            return _bad_request("from and to must be dates as YYYY-MM-DD")
        if start > end:
            return _bad_request("from must not be after to")
        if (end - start).days >= MAX_RANGE_DAYS:
            return _bad_request(f"the range is limited to {MAX_RANGE_DAYS} days")
        currency = request.args.get("currency") or None
        if currency is not None and not _CURRENCY.match(currency):
            return _bad_request("currency must be an ISO 4217 code such as BRL")
        try:
            rows = warehouse.revenue_daily(start, end, currency)
        except WarehouseUnavailable as error:
            return jsonify(error="unavailable", message=str(error)[:200]), 503
        body = [
            {
                "date": _json_value(row["day"]),
                "currency": row["currency"],
                "gross": _json_value(row["gross"]),
                "refunds": _json_value(row["refunds"]),
                "chargebacks": _json_value(row["chargebacks"]),
                "net": _json_value(row["net"]),
                "purchases": int(row["purchases"]),
            }
            for row in rows
        ]
        return jsonify(body), 200

    @blueprint.get("/views/<name>")
    @require_bearer(admin_token)
    def view_rows(name: str) -> tuple[Response, int]:
        if name not in DASHBOARD_VIEWS:
            return jsonify(error="not_found", message=f"views: {', '.join(DASHBOARD_VIEWS)}"), 404
        try:
            rows = warehouse.query_view(name)
        except WarehouseUnavailable as error:
            return jsonify(error="unavailable", message=str(error)[:200]), 503
        return jsonify([{k: _json_value(v) for k, v in row.items()} for row in rows]), 200

    @blueprint.get("/dashboard")
    def dashboard() -> Response:
        html = resources.files("analytics").joinpath("static", "dashboard.html").read_text("utf-8")
        response = Response(html, content_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"
        )
        return response

    @blueprint.get("/dashboard/static/<filename>")
    def dashboard_static(filename: str) -> Response:
        if filename not in _STATIC:
            abort(404)
        text = resources.files("analytics").joinpath("static", filename).read_text("utf-8")
        return Response(text, content_type=_STATIC[filename] + "; charset=utf-8")

    return blueprint


def create_app() -> Flask:
    """Gunicorn's entry point: ``analytics.entrypoints.api:create_app()``."""
    from analytics.bootstrap import build_api

    return build_api()
