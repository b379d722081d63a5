"""What the dashboard and the API answer: figures per currency over a date range, for one product or all.

Currencies are never added together. Monthly views are cut to the months the range touches and summed
over products per currency (a subscriber code is per product, so sums of subscribers are exact). A
figure in a reporting currency comes only from rates the owner loaded; days without one are listed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from analytics.ports import Row, Warehouse

AMOUNTS = ("gross", "completed", "refunds", "chargebacks", "net", "producer_net")
COUNTS = ("purchases", "completed_count", "refund_count", "chargeback_count", "partial_refund_count")


@dataclass(frozen=True)
class Scope:
    start: date
    end: date
    product: str | None = None

    @property
    def first_month(self) -> date:
        return self.start.replace(day=1)

    def month_filter(self) -> tuple[str, dict[str, Any]]:
        where = "month BETWEEN @first_month AND @last_month"
        params: dict[str, Any] = {"first_month": self.first_month, "last_month": self.end}
        if self.product is not None:
            where += " AND product_id = @product"
            params["product"] = self.product
        return where, params


def _zero() -> dict[str, Any]:
    return {**dict.fromkeys(AMOUNTS, Decimal(0)), **dict.fromkeys(COUNTS, 0)}


def daily(warehouse: Warehouse, scope: Scope, currency: str | None = None) -> list[Row]:
    """Rows per day and currency; over all products they are summed per currency, never across."""
    rows = warehouse.revenue_daily(scope.start, scope.end, currency, scope.product)
    out: dict[tuple[date, str], dict[str, Any]] = defaultdict(_zero)
    for row in rows:
        target = out[(row["day"], row["currency"])]
        for name in (*AMOUNTS, *COUNTS):
            target[name] += row.get(name) or 0
    return [{"day": day, "currency": cur, **values} for (day, cur), values in sorted(out.items())]


def _this_month(today: date | None) -> date:
    return (today or datetime.now(UTC).date()).replace(day=1)


def monthly(warehouse: Warehouse, view: str, scope: Scope, today: date | None = None) -> list[Row]:
    """A monthly view cut to the range's months, summed over products (per currency where it has one).

    ``in_progress`` marks the current month: its churn counts subscribers whose renewal is still to come.
    """
    where, params = scope.month_filter()
    rows = warehouse.query_view(view, where, params)
    if view == "mrr_monthly":
        fields, key = ("mrr", "active_subscribers", "new_subscribers"), ("month", "currency")
    elif view == "churn_monthly":
        fields, key = ("subscribers_at_start", "churned"), ("month",)
    elif view == "refund_rates_monthly":
        fields = ("purchases", "refund_count", "chargeback_count", "partial_refund_count")
        key = ("month", "currency")
    else:
        raise ValueError(f"not a monthly view: {view}")
    out: dict[tuple, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(fields, 0))
    for row in rows:
        target = out[tuple(row[k] for k in key)]
        for name in fields:
            target[name] += row[name] or 0
    result = []
    for k, values in sorted(out.items()):
        item = dict(zip(key, k, strict=True)) | values
        item["in_progress"] = item["month"] >= _this_month(today)
        if view == "churn_monthly":
            item["churn_rate"] = _ratio(values["churned"], values["subscribers_at_start"])
        if view == "refund_rates_monthly":
            item["refund_rate"] = _ratio(values["refund_count"], values["purchases"])
            item["chargeback_rate"] = _ratio(values["chargeback_count"], values["purchases"])
        result.append(item)
    return result


def _previous_month(month: date) -> date:
    return (month - timedelta(days=1)).replace(day=1)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def summary(
    warehouse: Warehouse, scope: Scope, report: str | None = None, today: date | None = None
) -> dict[str, Any]:
    """KPI per currency over the range; churn over the range's ended months; optionally converted totals.

    MRR and active subscribers are those of the range's last month, or of the month before when the
    last one is still in progress (a month that started yesterday has hardly renewed yet).
    """
    per_currency: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            **_zero(),
            "mrr": Decimal(0),
            "active_subscribers": 0,
            "new_subscribers": 0,
            "mrr_month": None,
        }
    )
    for row in daily(warehouse, scope):
        target = per_currency[row["currency"]]
        for name in (*AMOUNTS, *COUNTS):
            target[name] += row[name]
    mrr = monthly(warehouse, "mrr_monthly", scope, today)
    last_month = scope.end.replace(day=1)
    if last_month >= _this_month(today) and scope.first_month < last_month:
        last_month = _previous_month(last_month)
    for row in mrr:
        target = per_currency[row["currency"]]
        target["new_subscribers"] += row["new_subscribers"]
        if row["month"] == last_month:  # MRR and active subscribers of the range's last month
            target["mrr"] += row["mrr"]
            target["active_subscribers"] += row["active_subscribers"]
    for values in per_currency.values():
        values["mrr_month"] = last_month
    churn = [r for r in monthly(warehouse, "churn_monthly", scope, today) if not r["in_progress"]]
    at_start = sum(r["subscribers_at_start"] for r in churn)
    churned = sum(r["churned"] for r in churn)
    body: dict[str, Any] = {
        "from": scope.start,
        "to": scope.end,
        "product": scope.product,
        "currencies": [{"currency": c, **v} for c, v in sorted(per_currency.items())],
        "churn": {
            "subscribers_at_start": at_start,
            "churned": churned,
            "churn_rate": _ratio(churned, at_start),
        },
    }
    if report:
        body["converted"] = converted(warehouse, scope, report)
    return body


def converted(warehouse: Warehouse, scope: Scope, report: str) -> dict[str, Any]:
    """Totals in ``report`` from the owner's rates; what had no rate is listed, never converted."""
    where = "day BETWEEN @start AND @end AND reporting_currency = @report"
    params: dict[str, Any] = {"start": scope.start, "end": scope.end, "report": report}
    if scope.product is not None:
        where += " AND product_id = @product"
        params["product"] = scope.product
    rows = warehouse.query_view("revenue_daily_converted", where, params)
    totals = dict.fromkeys(AMOUNTS, Decimal(0))
    missing: set[tuple[date, str]] = set()
    for row in rows:
        if row["rate"] is None:
            missing.add((row["day"], row["currency"]))
            continue
        for name in AMOUNTS:
            totals[name] += row[name] or 0
    return {
        "reporting_currency": report,
        "rates_loaded": bool(
            warehouse.query_view("fx_rates_latest", "reporting_currency = @report", {"report": report})
        ),
        **totals,
        "missing_rates": [{"day": d, "currency": c} for d, c in sorted(missing)],
        "note": "converted with the daily rates loaded by the owner (analytics rates load); "
        "days listed in missing_rates are left out",
    }


def options(warehouse: Warehouse) -> dict[str, list[str]]:
    """What the dashboard's filters offer: products and currencies seen, reporting currencies loaded."""
    return {
        "products": warehouse.distinct("revenue_daily", "product_id"),
        "currencies": warehouse.distinct("revenue_daily", "currency"),
        "reporting_currencies": warehouse.distinct("fx_rates_latest", "reporting_currency"),
    }


PAYMENT_FIELDS = (
    "event_id",
    "kind",
    "status",
    "transaction",
    "product_id",
    "plan_id",
    "currency",
    "price",
    "producer_net",
    "producer_currency",
    "recurrence_number",
    "is_subscription",
    "subscriber_code",
    "occurred_at",
)


def payments_of(warehouse: Warehouse, transaction: str) -> list[dict[str, Any]]:
    """Every payment event of one Hotmart transaction, oldest first, each once (the raw table is append-only
    and may hold an event twice). No buyer field: the operator looked the buyer up elsewhere."""
    rows = warehouse.query_view("payments", "transaction = @transaction", {"transaction": transaction})
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: (str(r["occurred_at"]), r["event_id"])):
        if row["event_id"] in seen:
            continue
        seen.add(row["event_id"])
        out.append({field: row.get(field) for field in PAYMENT_FIELDS})
    return out


PROGRESS_BUCKETS = ("never_started", "started", "completed")


def learning_cohorts(warehouse: Warehouse, scope: Scope) -> dict[str, Any]:
    """Cohorts (product x month of approval) whose month overlaps the range, and how much activity arrived.

    ``activity`` counts every learning activity ever recorded (not only the range's): zero events and
    no last time means nothing comes from TalentLMS (enrollment has no TalentLMS credentials).
    """
    where = "cohort_month BETWEEN @first_month AND @last_month"
    params: dict[str, Any] = {"first_month": scope.first_month, "last_month": scope.end}
    if scope.product is not None:
        where += " AND product_id = @product"
        params["product"] = scope.product
    rows = warehouse.query_view("learning_cohorts", where, params)
    return {
        "rows": [
            {
                "product_id": row["product_id"],
                "cohort_month": row["cohort_month"],
                "buyers": row["buyers"],
                "started": row["started"],
                "completed": row["completed"],
                "started_rate": _ratio(row["started"], row["buyers"]),
                "completion_rate": _ratio(row["completed"], row["buyers"]),
                "first_access_hours_median": _float(row["first_access_hours_median"]),
            }
            for row in rows
        ],
        "activity": learning_activity(warehouse),
    }


def learning_activity(warehouse: Warehouse) -> dict[str, Any]:
    """How many learning activities analytics holds (each once) and when the latest happened (UTC)."""
    relation = warehouse.relation("learning_activity")
    row = warehouse.query(
        f"SELECT COUNT(DISTINCT activity_id) AS events, MAX(occurred_at) AS last FROM {relation}"  # noqa: S608
    )[0]
    last = row["last"]
    if last is not None:
        last = (last.astimezone(UTC) if last.tzinfo else last.replace(tzinfo=UTC)).isoformat(
            timespec="milliseconds"
        )
        last = last.replace("+00:00", "Z")
    return {"events": int(row["events"] or 0), "last_occurred_at": last}


def refunds_by_progress(warehouse: Warehouse, scope: Scope) -> dict[str, Any]:
    """Per product and progress bucket, of the purchases approved in the range: buyers, refunded, rate.

    Refunded means a full refund or a chargeback; the bucket is the progress when it happened.
    """
    where = "CAST(approved_at AS DATE) BETWEEN @start AND @end"  # the UTC day on both warehouses
    params: dict[str, Any] = {"start": scope.start, "end": scope.end}
    if scope.product is not None:
        where += " AND product_id = @product"
        params["product"] = scope.product
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in warehouse.query_view("learning_purchases", where, params):
        target = counts[(row["product_id"], row["progress"])]
        target[0] += 1
        target[1] += row["reversed_at"] is not None
    products = sorted({product for product, _ in counts})
    rows = []
    for product in products:  # every bucket of every product, so an empty bucket shows as 0 buyers
        for bucket in PROGRESS_BUCKETS:
            buyers, refunded = counts.get((product, bucket), (0, 0))
            rows.append(
                {
                    "product_id": product,
                    "bucket": bucket,
                    "buyers": buyers,
                    "refunded": refunded,
                    "refund_rate": _ratio(refunded, buyers),
                }
            )
    return {"rows": rows}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
