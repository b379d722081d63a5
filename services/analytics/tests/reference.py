"""An independent plain-Python computation of the revenue model, to check the SQL views against.

Written from the rules in docs/analytics.md, not from the SQL: one charge (transaction, recurrence) has
at most one approval, one completion and one reversal; the later reversal wins its category, a partial
refund never replaces a full refund or a chargeback, and a partial refund's amount is unknown; a full
reversal takes back what the approval counted; producer net is in the commission's currency.

The learning part follows docs/analytics.md "Learning": a purchase (one-off transaction or subscription)
counts the sign-ins and completions attributed to any of its transactions from its approval until its
first full refund or chargeback; each TalentLMS activity counts once per purchase however often read.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from coursebridge.events import Event

ZERO = Decimal(0)
MEASURES = ("gross", "completed", "refunds", "chargebacks", "net", "producer_net")
COUNTS = ("purchases", "completed_count", "refund_count", "chargeback_count", "partial_refund_count")


def _money(block: dict[str, Any] | None) -> tuple[Decimal | None, str | None]:
    if not block or block.get("value") is None:
        return None, (block or {}).get("currency")
    return Decimal(str(block["value"])).quantize(Decimal("0.000000001")), block.get("currency")


def _states(events: list[Event]) -> list[dict[str, Any]]:
    """Unique state changes: one per event id, then one per (transaction, kind, status, recurrence)."""
    by_id = {e.id: e for e in events}
    kept: dict[tuple, dict[str, Any]] = {}
    for event in by_id.values():
        data = event.data
        kind = data.get("kind") or ""
        if not event.type.startswith("coursebridge.payment.") or not kind.startswith("purchase_"):
            continue
        purchase = data.get("purchase") or {}
        price, currency = _money(purchase.get("price"))
        producer = next((c for c in data.get("commissions") or [] if c.get("source") == "PRODUCER"), None)
        state = {
            "id": event.id,
            "kind": kind,
            "status": purchase.get("status"),
            "transaction": data.get("transaction"),
            "recurrence": purchase.get("recurrence_number") or 0,
            "at": data["occurred_at"],
            "product": (data.get("product") or {}).get("id"),
            "subscriber": (data.get("subscription") or {}).get("subscriber_code"),
            "price": price,
            "currency": currency,
            "producer_net": Decimal(str(producer["value"])) if producer else None,
            "producer_currency": (producer.get("currency") or currency) if producer else None,
        }
        key = (state["transaction"] or event.id, kind, state["status"] or "", state["recurrence"])
        if key not in kept or (state["at"], state["id"]) < (kept[key]["at"], kept[key]["id"]):
            kept[key] = state
    return list(kept.values())


def _partial(state: dict[str, Any]) -> bool:
    return state["kind"] == "purchase_refunded" and state["status"] == "partially_refunded"


def charges(events: list[Event]) -> dict[tuple[str, int], dict[str, Any]]:
    """Final state of each charge: approval, completion, winning reversal."""
    out: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)
    for s in _states(events):
        if not s["transaction"]:
            continue
        charge = out[(s["transaction"], s["recurrence"])]
        order = (s["at"], s["id"])
        if s["kind"] == "purchase_approved":
            if "approved" not in charge or order < (charge["approved"]["at"], charge["approved"]["id"]):
                charge["approved"] = s
        elif s["kind"] == "purchase_complete":
            if "completed" not in charge or order < (charge["completed"]["at"], charge["completed"]["id"]):
                charge["completed"] = s
        elif s["kind"] in ("purchase_refunded", "purchase_chargeback"):
            rank = (not _partial(s), s["at"], s["id"])
            old = charge.get("reversed")
            if old is None or rank > (not _partial(old), old["at"], old["id"]):
                charge["reversed"] = s
    return {k: v for k, v in out.items() if v}


def revenue_daily(events: list[Event]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(day, product, currency) -> gross, completed, refunds, chargebacks, net, producer_net, counts."""
    out: dict[tuple, dict[str, Any]] = defaultdict(
        lambda: {**dict.fromkeys(MEASURES, ZERO), **dict.fromkeys(COUNTS, 0)}
    )
    for charge in charges(events).values():
        a, c, r = charge.get("approved"), charge.get("completed"), charge.get("reversed")
        product = (a or r or c)["product"]
        if a and a["price"] is not None and a["currency"]:
            row = out[(a["at"][:10], product, a["currency"])]
            row["gross"] += a["price"]
            row["net"] += a["price"]
            row["purchases"] += 1
        if a and a["producer_net"] is not None:
            out[(a["at"][:10], product, a["producer_currency"])]["producer_net"] += a["producer_net"]
        if c:
            basis = a or c
            if basis["price"] is not None and basis["currency"]:
                row = out[(c["at"][:10], product, basis["currency"])]
                row["completed"] += basis["price"]
                row["completed_count"] += 1
        if r:
            basis = a or r
            day = r["at"][:10]
            if _partial(r):
                if basis["currency"]:
                    out[(day, product, basis["currency"])]["partial_refund_count"] += 1
                continue
            if basis["price"] is not None and basis["currency"]:
                row = out[(day, product, basis["currency"])]
                if r["kind"] == "purchase_chargeback":
                    row["chargebacks"] += basis["price"]
                    row["chargeback_count"] += 1
                else:
                    row["refunds"] += basis["price"]
                    row["refund_count"] += 1
                row["net"] -= basis["price"]
            if basis["producer_net"] is not None:
                out[(day, product, basis["producer_currency"])]["producer_net"] -= basis["producer_net"]
    return dict(out)


def revenue_daily_totals(events: list[Event]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple, dict[str, Any]] = defaultdict(
        lambda: {**dict.fromkeys(MEASURES, ZERO), **dict.fromkeys(COUNTS, 0)}
    )
    for (day, _product, currency), row in revenue_daily(events).items():
        for name, value in row.items():
            out[(day, currency)][name] += value
    return dict(out)


def subscription_months(events: list[Event]) -> dict[tuple[str, str], dict[str, Any]]:
    """(subscription, month) -> the month's last paid charge not fully reversed."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for charge in charges(events).values():
        a, r = charge.get("approved"), charge.get("reversed")
        if not a or a["price"] is None or not a["currency"]:
            continue
        subscriber = (
            a["subscriber"]
            or (r or {}).get("subscriber")
            or (charge.get("completed") or {}).get("subscriber")
        )
        if not subscriber or (r and not _partial(r)):
            continue
        key = (subscriber, a["at"][:7] + "-01")
        if key not in last or (a["at"], a["id"]) > (last[key]["at"], last[key]["id"]):
            last[key] = a
    return last


def mrr_monthly(events: list[Event]) -> dict[tuple[str, str, str], dict[str, Any]]:
    months = subscription_months(events)
    first: dict[str, str] = {}
    for subscription, month in months:
        first[subscription] = min(first.get(subscription, month), month)
    out: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"mrr": ZERO, "subs": set(), "new": set()})
    for (subscription, month), a in months.items():
        row = out[(month, a["product"], a["currency"])]
        row["mrr"] += a["price"]
        row["subs"].add(subscription)
        if first[subscription] == month:
            row["new"].add(subscription)
    return {
        k: {"mrr": v["mrr"], "active_subscribers": len(v["subs"]), "new_subscribers": len(v["new"])}
        for k, v in out.items()
    }


def churn_monthly(events: list[Event]) -> dict[tuple[str, str], dict[str, int]]:
    months = subscription_months(events)
    active: dict[str, set[tuple[str, str]]] = defaultdict(set)  # month -> {(subscription, product)}
    for (subscription, month), a in months.items():
        active[month].add((subscription, a["product"]))
    if not active:
        return {}
    last = max(active)
    out: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"subscribers_at_start": 0, "churned": 0}
    )
    for month, subs in active.items():
        if month >= last:
            continue
        year, mon = int(month[:4]), int(month[5:7])
        following = f"{year + mon // 12:04d}-{mon % 12 + 1:02d}-01"
        now_active = {s for s, _ in active.get(following, set())}
        for subscription, product in subs:
            row = out[(following, product)]
            row["subscribers_at_start"] += 1
            row["churned"] += subscription not in now_active
    return dict(out)


# --- learning ----------------------------------------------------------------------------------------


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(UTC).replace(tzinfo=None)


def _activity(events: list[Event]) -> list[dict[str, Any]]:
    """One reading per (activity_id, transaction): the first one observed (replays repeat activity_id)."""
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    for event in {e.id: e for e in events}.values():
        if not event.type.startswith("coursebridge.learning."):
            continue
        data = event.data
        for index, purchase in enumerate(data["purchases"] or [{}]):
            row = {
                "activity": data["activity"],
                "transaction": purchase.get("transaction"),
                "at": _moment(data["occurred_at"]),
                "order": (_moment(data["observed_at"]), event.id, index),
            }
            key = (data["activity_id"], row["transaction"] or "")
            if key not in kept or row["order"] < kept[key]["order"]:
                kept[key] = row
    return list(kept.values())


def learning_purchases(events: list[Event]) -> dict[str, dict[str, Any]]:
    """Purchase (first transaction) -> approval, reversal times, first access, completion, progress.

    A purchase is a one-off transaction or a whole subscription (subscriber code and product); activity
    counts from its approval until its first full refund or chargeback, attributed to any of its charges.
    """
    states = _states(events)
    first: dict[str, dict[str, Any]] = {}
    key_of: dict[str, str] = {}
    for s in states:
        if s["kind"] != "purchase_approved" or not s["transaction"]:
            continue
        key = f"sub:{s['subscriber']}:{s['product']}" if s["subscriber"] else f"tx:{s['transaction']}"
        key_of[s["transaction"]] = key
        if key not in first or (s["at"], s["id"]) < (first[key]["at"], first[key]["id"]):
            first[key] = s
    purchase_of = {tx: first[key]["transaction"] for tx, key in key_of.items()}
    out: dict[str, dict[str, Any]] = {
        a["transaction"]: {
            "product_id": a["product"],
            "cohort_month": a["at"][:7] + "-01",
            "approved_at": _moment(a["at"]),
            "refunded_at": None,
            "charged_back_at": None,
            "reversed_at": None,
            "first_access_at": None,
            "completed_at": None,
        }
        for a in first.values()
    }
    for s in states:
        full = s["kind"] == "purchase_chargeback" or (s["kind"] == "purchase_refunded" and not _partial(s))
        if not full or s["transaction"] not in purchase_of:
            continue
        row = out[purchase_of[s["transaction"]]]
        at = _moment(s["at"])
        field = "charged_back_at" if s["kind"] == "purchase_chargeback" else "refunded_at"
        for name in (field, "reversed_at"):
            if row[name] is None or at < row[name]:
                row[name] = at
    for act in _activity(events):
        if act["transaction"] not in purchase_of:
            continue
        row = out[purchase_of[act["transaction"]]]
        if act["at"] < row["approved_at"] or (row["reversed_at"] and act["at"] >= row["reversed_at"]):
            continue
        field = "first_access_at" if act["activity"] == "signed_in" else "completed_at"
        if row[field] is None or act["at"] < row[field]:
            row[field] = act["at"]
    for row in out.values():
        row["progress"] = (
            "completed" if row["completed_at"] else "started" if row["first_access_at"] else "never_started"
        )
        row["first_access_hours"] = (
            None
            if row["first_access_at"] is None
            else (row["first_access_at"] - row["approved_at"]) // timedelta(milliseconds=1) / 3_600_000
        )
    return out


def learning_cohorts(events: list[Event]) -> dict[tuple[str, str], dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in learning_purchases(events).values():
        groups[(row["product_id"], row["cohort_month"])].append(row)
    out = {}
    for key, rows in groups.items():
        started = sum(r["progress"] != "never_started" for r in rows)
        completed = sum(r["progress"] == "completed" for r in rows)
        hours = [r["first_access_hours"] for r in rows if r["first_access_hours"] is not None]
        out[key] = {
            "buyers": len(rows),
            "started": started,
            "completed": completed,
            "started_rate": started / len(rows),
            "completion_rate": completed / len(rows),
            "first_access_hours_median": statistics.median(hours) if hours else None,
        }
    return out


def refund_rate_by_progress(events: list[Event]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"buyers": 0, "refunded": 0})
    for row in learning_purchases(events).values():
        target = out[(row["product_id"], row["progress"])]
        target["buyers"] += 1
        target["refunded"] += row["reversed_at"] is not None
    for row in out.values():
        row["refund_rate"] = row["refunded"] / row["buyers"]
    return dict(out)
