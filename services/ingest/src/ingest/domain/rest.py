"""Hotmart REST items (sales history, subscriptions) -> the webhook a fact would have produced (pure).

Reconciliation and backfill build the 2.0 webhook body Hotmart would have sent for a fact and run it
through the same normaliser, so a recovered event is the same domain event as a webhook's, with
``source`` ``reconciliation``/``backfill`` and a deterministic id (``<source>:<kind>:<transaction>``, or
``<source>:subscription_cancellation:<subscriber code>:<cancellation ms>``): recovering it twice is a
duplicate, and the fact key makes a late webhook a duplicate of it (``ingest.domain.facts``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ingest.domain.hotmart import NormalisedEvent, NotNormalisable, normalise

# REST sale status -> the kinds that fact implies, in order (a complete sale was approved first)
KINDS_OF_SALE_STATUS: dict[str, tuple[str, ...]] = {
    "APPROVED": ("purchase_approved",),
    "COMPLETE": ("purchase_approved", "purchase_complete"),
    "REFUNDED": ("purchase_refunded",),
    "CHARGEBACK": ("purchase_chargeback",),
    "PROTESTED": ("purchase_protest",),
    "OVERDUE": ("purchase_delayed",),
}
GRANTING_STATUSES = ("APPROVED", "COMPLETE")
REVOKING_STATUSES = ("REFUNDED", "CHARGEBACK", "PROTESTED")
CANCELLED_SUBSCRIPTION_STATUSES = ("CANCELLED_BY_CUSTOMER", "CANCELLED_BY_SELLER", "CANCELLED_BY_ADMIN")
OVERDUE_SUBSCRIPTION_STATUSES = ("OVERDUE", "DELAYED")
_SECONDS_MAGNITUDE = 10**11  # Hotmart documents ms but some examples are 10-digit seconds


def to_ms(value: object) -> int | None:
    """Epoch ms from a REST date (ms, or 10-digit seconds as some answers show); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = int(value)
    return number * 1000 if 0 < abs(number) < _SECONDS_MAGNITUDE else number


def sale_events(
    item: dict[str, Any],
    subscription: dict[str, Any] | None,
    *,
    source: str,
    now: datetime,
) -> list[NormalisedEvent]:
    """The events one sales-history item implies; ``subscription`` is its subscription's REST item."""
    purchase = item.get("purchase") or {}
    status = str(purchase.get("status") or "").upper()
    kinds = KINDS_OF_SALE_STATUS.get(status, ())
    transaction = purchase.get("transaction")
    if not kinds or not transaction:
        return []
    events = []
    for kind in kinds:
        body = _sale_body(item, subscription, kind, source, now)
        try:
            events.append(normalise(body, received_at=now, source=source))
        except NotNormalisable:
            continue  # a REST item without product id: nothing we could act on
    return events


def _sale_body(
    item: dict[str, Any], subscription: dict[str, Any] | None, kind: str, source: str, now: datetime
) -> dict[str, Any]:
    purchase = item.get("purchase") or {}
    product = item.get("product") or {}
    buyer = item.get("buyer") or {}
    price = purchase.get("price") or {}
    payment = purchase.get("payment") or {}
    approved = to_ms(purchase.get("approved_date"))
    now_ms = int(now.timestamp() * 1000)
    # When did the fact happen? An approval at its approval date; what REST does not date (a refund, the
    # end of the warranty) at the moment we learnt it, which can only be later than the truth.
    if kind == "purchase_approved":
        occurred = approved or to_ms(purchase.get("order_date")) or now_ms
    elif kind == "purchase_complete":
        occurred = min(now_ms, to_ms(purchase.get("warranty_expire_date")) or now_ms)
    else:
        occurred = now_ms
    data: dict[str, Any] = {
        "product": {"id": product.get("id"), "name": product.get("name"), "ucode": product.get("ucode")},
        "buyer": {"email": buyer.get("email"), "name": buyer.get("name")},
        "purchase": {
            "transaction": purchase.get("transaction"),
            "status": purchase.get("status"),
            "approved_date": approved,
            "order_date": to_ms(purchase.get("order_date")),
            "recurrence_number": purchase.get("recurrency_number"),
            "is_subscription": purchase.get("is_subscription") is True,
            "price": {"value": price.get("value"), "currency_value": price.get("currency_code")},
            "offer": {"code": (purchase.get("offer") or {}).get("code")},
            "payment": {
                "type": payment.get("type"),
                "installments_number": payment.get("installments_number"),
            },
        },
    }
    if subscription is not None:
        data["purchase"]["date_next_charge"] = to_ms(subscription.get("date_next_charge"))
        data["subscription"] = _subscription_block(subscription)
    return {
        "id": f"{source}:{kind}:{purchase.get('transaction')}",
        "event": kind.upper(),
        "version": "rest",
        "creation_date": occurred,
        "data": data,
    }


def subscription_event(
    item: dict[str, Any], kind: str, *, source: str, now: datetime
) -> NormalisedEvent | None:
    """``subscription_cancellation`` or ``purchase_delayed`` for one subscriptions item (None if unusable)."""
    code = item.get("subscriber_code")
    product = item.get("product") or {}
    subscriber = item.get("subscriber") or {}
    now_ms = int(now.timestamp() * 1000)
    if not code:
        return None
    if kind == "subscription_cancellation":
        cancelled = to_ms(item.get("end_accession_date")) or now_ms
        body: dict[str, Any] = {
            "id": f"{source}:subscription_cancellation:{code}:{cancelled}",
            "event": "SUBSCRIPTION_CANCELLATION",
            "creation_date": min(cancelled, now_ms),
            "data": {
                "date_next_charge": to_ms(item.get("date_next_charge")),
                "cancellation_date": cancelled,
                "product": {"id": product.get("id"), "name": product.get("name")},
                "subscriber": {
                    "code": code,
                    "email": subscriber.get("email"),
                    "name": subscriber.get("name"),
                },
                "subscription": {**_subscription_block(item), "id": item.get("subscription_id")},
            },
        }
    elif kind == "purchase_delayed":
        if not item.get("transaction"):
            return None
        body = {
            "id": f"{source}:purchase_delayed:{item['transaction']}:{code}",
            "event": "PURCHASE_DELAYED",
            "creation_date": now_ms,
            "data": {
                "product": {"id": product.get("id"), "name": product.get("name")},
                "buyer": {"email": subscriber.get("email"), "name": subscriber.get("name")},
                "purchase": {"transaction": item["transaction"], "status": "OVERDUE"},
                "subscription": _subscription_block(item),
            },
        }
    else:
        raise ValueError(f"no subscription event of kind {kind!r}")
    body["version"] = "rest"
    try:
        return normalise(body, received_at=now, source=source)
    except NotNormalisable:
        return None


def _subscription_block(item: dict[str, Any]) -> dict[str, Any]:
    plan = item.get("plan") or {}
    return {
        "status": item.get("status"),
        "plan": {"id": plan.get("id"), "name": plan.get("name")},
        "subscriber": {"code": item.get("subscriber_code")},
        "date_next_charge": to_ms(item.get("date_next_charge")),
    }


def ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)
