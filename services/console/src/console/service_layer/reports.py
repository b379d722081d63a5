"""What the Revenue and Learning pages ask analytics, put together for one JSON answer per page.

The browser asks the console (its session, never the admin token); the console asks analytics with the
admin token. The Revenue page's five calls go out at once, so the page waits for the slowest, not the sum.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from console.adapters.services import ServiceError, Services
from console.domain.reports import ReportQuery

EMPTY_OPTIONS: dict[str, list[str]] = {"products": [], "currencies": [], "reporting_currencies": []}
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="console-analytics")


def revenue(services: Services, query: ReportQuery) -> dict[str, Any]:
    """KPI per currency, daily rows per currency and the three monthly views, for the range and product.

    Raises ``ServiceError`` when analytics refuses or is down (the route says so; nothing is made up).
    """
    params = query.params()
    calls = {
        "daily": lambda: services.revenue_daily(params),
        "summary": lambda: services.revenue_summary(params, query.report),
        "mrr": lambda: services.revenue_view("mrr_monthly", params),
        "churn": lambda: services.revenue_view("churn_monthly", params),
        "rates": lambda: services.revenue_view("refund_rates_monthly", params),
    }
    futures = {name: _POOL.submit(call) for name, call in calls.items()}
    answers = {name: future.result() for name, future in futures.items()}
    return {"from": params["from"], "to": params["to"], "product": query.product, **answers}


def learning(services: Services, query: ReportQuery) -> dict[str, Any]:
    """Cohorts (started, completed, time to first access) and refund rate by progress.

    ``available`` is false when analytics does not serve the learning views yet (404: an older
    analytics); the page then says what the empty state says, not an error.
    """
    params = query.params()
    cohorts_call = _POOL.submit(services.learning_cohorts, params)
    refunds_call = _POOL.submit(services.learning_refunds, params)
    try:
        cohorts, refunds = cohorts_call.result(), refunds_call.result()
    except ServiceError as error:
        if error.status == 404:
            return {"from": params["from"], "to": params["to"], "product": query.product, "available": False}
        raise
    activity = cohorts.get("activity") or {}
    return {
        "from": params["from"],
        "to": params["to"],
        "product": query.product,
        "available": True,
        "activity": {
            "events": int(activity.get("events") or 0),
            "last_occurred_at": activity.get("last_occurred_at"),
        },
        "cohorts": cohorts.get("rows") or [],
        "refunds": refunds.get("rows") or [],
    }
