"""An independent Python computation of the revenue metrics, to check the SQL views against."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from coursebridge.events import Event


def _unique_states(events: list[Event]) -> list[dict[str, Any]]:
    by_id = {e.id: e for e in events}
    states: dict[tuple, tuple] = {}
    for event in by_id.values():
        data = event.data
        kind = data.get("kind", "")
        if not event.type.startswith("coursebridge.payment.") or not kind.startswith("purchase_"):
            continue
        purchase = data.get("purchase") or {}
        key = (data.get("transaction") or event.id, kind, purchase.get("recurrence_number") or 0)
        order = (data["occurred_at"], event.id)
        if key not in states or order < states[key][0]:
            states[key] = (order, event)
    rows = []
    for (_order, _id), event in states.values():
        data = event.data
        purchase = data.get("purchase") or {}
        price = purchase.get("price") or {}
        rows.append(
            {
                "kind": data["kind"],
                "transaction": data.get("transaction"),
                "recurrence": purchase.get("recurrence_number") or 0,
                "day": data["occurred_at"][:10],
                "month": data["occurred_at"][:7] + "-01",
                "at": data["occurred_at"],
                "id": event.id,
                "currency": price.get("currency"),
                "price": Decimal(str(price["value"])) if price.get("value") is not None else None,
                "subscriber": (data.get("subscription") or {}).get("subscriber_code"),
                "is_subscription": purchase.get("is_subscription"),
            }
        )
    return rows


def revenue_daily_totals(events: list[Event]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"gross": Decimal(0), "refunds": Decimal(0), "chargebacks": Decimal(0), "purchases": 0}
    )
    for row in _unique_states(events):
        if row["currency"] is None or row["price"] is None:
            continue
        target = out[(row["day"], row["currency"])]
        if row["kind"] == "purchase_approved":
            target["gross"] += row["price"]
            target["purchases"] += 1
        elif row["kind"] == "purchase_refunded":
            target["refunds"] += row["price"]
        elif row["kind"] == "purchase_chargeback":
            target["chargebacks"] += row["price"]
        else:
            continue
    for value in out.values():
        value["net"] = value["gross"] - value["refunds"] - value["chargebacks"]
    return {k: v for k, v in out.items() if v["purchases"] or v["refunds"] or v["chargebacks"]}


def mrr_monthly(events: list[Event]) -> dict[tuple[str, str], dict[str, Any]]:
    states = _unique_states(events)
    reversed_ = {
        (r["transaction"], r["recurrence"])
        for r in states
        if r["kind"] in ("purchase_refunded", "purchase_chargeback") and r["transaction"]
    }
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for r in states:
        if r["kind"] != "purchase_approved" or not r["is_subscription"] or r["price"] is None:
            continue
        if (r["transaction"], r["recurrence"]) in reversed_:
            continue
        key = (r["subscriber"] or r["transaction"], r["month"])
        if key not in last or (r["at"], r["id"]) > (last[key]["at"], last[key]["id"]):
            last[key] = r
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"mrr": Decimal(0), "subs": set()})
    for (subscription, month), r in last.items():
        out[(month, r["currency"])]["mrr"] += r["price"]
        out[(month, r["currency"])]["subs"].add(subscription)
    return {k: {"mrr": v["mrr"], "active_subscribers": len(v["subs"])} for k, v in out.items()}
