"""HTTP entry point: revenue and learning JSON per currency, for the console's Revenue and Learning pages.

Every JSON endpoint needs ``Authorization: Bearer $ADMIN_TOKEN`` and takes ``from``/``to``
(YYYY-MM-DD, at most 366 days) and an optional ``product``:

- ``GET /revenue/daily[?currency=BRL]``: one row per day and currency (currencies are never added).
- ``GET /revenue/summary[?report=EUR]``: KPI per currency (gross, completed, refunds, chargebacks, net,
  producer net, MRR and active subscribers of the last month, new subscribers) and churn; with
  ``report``, totals converted with the owner's loaded rates and the days that had none.
- ``GET /revenue/options``: products and currencies seen, reporting currencies loaded.
- ``GET /views/<mrr_monthly|churn_monthly|refund_rates_monthly>``: the months the range touches.
- ``GET /learning/cohorts``: per product and cohort month overlapping the range, buyers, started,
  completed, their rates and the median hours to first access; plus how much learning activity arrived.
- ``GET /learning/refunds-by-progress``: per product and progress bucket (never_started, started,
  completed) of the purchases approved in the range, buyers, refunded and the refund rate.

The charts are the operator console's (``services/console``: Revenue and Learning pages); analytics
serves data only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from analytics.ports import Warehouse, WarehouseUnavailable
from analytics.service_layer import reports
from analytics.service_layer.reports import Scope
from coursebridge.runtime.auth import require_bearer

MAX_RANGE_DAYS = 366
DASHBOARD_VIEWS = ("mrr_monthly", "churn_monthly", "refund_rates_monthly")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_PRODUCT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class BadRequest(Exception):
    pass


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _parse_day(name: str) -> date:
    text = request.args.get(name, "")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise BadRequest("from and to must be dates as YYYY-MM-DD")


def _scope() -> Scope:
    start, end = _parse_day("from"), _parse_day("to")
    if start > end:
        raise BadRequest("from must not be after to")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise BadRequest(f"the range is limited to {MAX_RANGE_DAYS} days")
    product = request.args.get("product") or None
    if product is not None and not _PRODUCT.match(product):
        raise BadRequest("product must be a Hotmart product id")
    return Scope(start, end, product)


def _currency(name: str) -> str | None:
    currency = request.args.get(name) or None
    if currency is not None and not _CURRENCY.match(currency):
        raise BadRequest(f"{name} must be an ISO 4217 code such as BRL")
    return currency


def _answer(work: Callable[[], Any]) -> tuple[Response, int]:
    try:
        return jsonify(_json_value(work())), 200
    except BadRequest as error:
        return jsonify(error="bad_request", message=str(error)), 400
    except WarehouseUnavailable as error:
        return jsonify(error="unavailable", message=str(error)[:200]), 503


def analytics_blueprint(warehouse: Warehouse, admin_token: str | None) -> Blueprint:
    blueprint = Blueprint("analytics", __name__)

    @blueprint.get("/revenue/daily")
    @require_bearer(admin_token)
    def revenue_daily() -> tuple[Response, int]:
        def work() -> list[dict[str, Any]]:
            scope, currency = _scope(), _currency("currency")
            rows = reports.daily(warehouse, scope, currency)
            return [{"date": row.pop("day"), **row} for row in rows]

        return _answer(work)

    @blueprint.get("/revenue/summary")
    @require_bearer(admin_token)
    def revenue_summary() -> tuple[Response, int]:
        return _answer(lambda: reports.summary(warehouse, _scope(), _currency("report")))

    @blueprint.get("/revenue/options")
    @require_bearer(admin_token)
    def revenue_options() -> tuple[Response, int]:
        return _answer(lambda: reports.options(warehouse))

    @blueprint.get("/views/<name>")
    @require_bearer(admin_token)
    def view_rows(name: str) -> tuple[Response, int]:
        if name not in DASHBOARD_VIEWS:
            return jsonify(error="not_found", message=f"views: {', '.join(DASHBOARD_VIEWS)}"), 404
        return _answer(lambda: reports.monthly(warehouse, name, _scope()))

    @blueprint.get("/learning/cohorts")
    @require_bearer(admin_token)
    def learning_cohorts() -> tuple[Response, int]:
        """Cohorts (product x month of approval) overlapping the range and the activity received."""
        return _answer(lambda: reports.learning_cohorts(warehouse, _scope()))

    @blueprint.get("/learning/refunds-by-progress")
    @require_bearer(admin_token)
    def refunds_by_progress() -> tuple[Response, int]:
        """Refund rate per product and progress bucket of the purchases approved in the range."""
        return _answer(lambda: reports.refunds_by_progress(warehouse, _scope()))

    @blueprint.get("/admin/payments")
    @require_bearer(admin_token)
    def payments() -> tuple[Response, int]:
        """Payments of one transaction (the operator console's buyer timeline)."""
        transaction = (request.args.get("transaction") or "").strip()
        if not transaction or len(transaction) > 64 or not transaction.replace("-", "").isalnum():
            return jsonify(
                error="bad_request", message="?transaction= must be a Hotmart transaction code"
            ), 400
        return _answer(lambda: {"payments": reports.payments_of(warehouse, transaction)})

    return blueprint


def create_app() -> Flask:
    """Gunicorn's entry point: ``analytics.entrypoints.api:create_app()``."""
    from analytics.bootstrap import build_api

    return build_api()
