"""What ingest remembers of Hotmart's facts, whatever delivered them (pure domain, no I/O).

Webhooks and the REST API (reconciliation, backfill) describe the same facts: "transaction X was
approved", "subscriber S cancelled". Each fact is published once, whichever source saw it first:

* a purchase fact is keyed ``<kind>:<transaction>``; ingest keeps one ``facts`` document per key, so a
  recovered fact is never re-published and a webhook arriving after reconciliation recovered its fact is
  recorded, not published again;
* a subscription's status (active / overdue / cancelled) is a register per subscriber code, merged by
  event time, so reconciliation can tell "Hotmart says cancelled, the webhooks never said so".
"""

from __future__ import annotations

from typing import Any

from coursebridge.events.payments import PURCHASE_KINDS

WEBHOOK_SOURCES = frozenset({"webhook", "webhook_v1"})
RECOVERY_SOURCES = frozenset({"reconciliation", "backfill"})

ACTIVE = "active"
OVERDUE = "overdue"
CANCELLED = "cancelled"

_APPROVALS = frozenset({"purchase_approved", "purchase_complete"})
_STATUS_CATEGORY = {
    "active": ACTIVE,
    "past_due": OVERDUE,
    "delayed": OVERDUE,
    "overdue": OVERDUE,
    "canceled_by_customer": CANCELLED,
    "canceled_by_seller": CANCELLED,
    "canceled_by_admin": CANCELLED,
    "expired": CANCELLED,
    "inactive": CANCELLED,
}
# kinds whose late webhook is a duplicate when reconciliation already set the same subscription status
_STATUS_KINDS = {"subscription_cancellation": CANCELLED, "purchase_delayed": OVERDUE}


def fact_key(kind: str, transaction: str | None) -> str | None:
    """``<kind>:<transaction>`` for purchase facts; None for facts without a transaction."""
    if kind in PURCHASE_KINDS and transaction:
        return f"{kind}:{transaction}"
    return None


# A sale found refunded (charged back, disputed, complete) was approved first: the approval is part of
# what was recovered, so its late webhook must not re-grant what the refund took away.
IMPLIED_KINDS: dict[str, tuple[str, ...]] = {
    "purchase_refunded": ("purchase_approved",),
    "purchase_chargeback": ("purchase_approved",),
    "purchase_protest": ("purchase_approved",),
    "purchase_complete": ("purchase_approved",),
}


def implied_fact_keys(kind: str, transaction: str | None) -> list[str]:
    return [key for implied in IMPLIED_KINDS.get(kind, ()) if (key := fact_key(implied, transaction))]


def subscription_status(data: dict[str, Any]) -> str | None:
    """active / overdue / cancelled as one payment event says it, or None when it says nothing."""
    kind = data.get("kind")
    if kind in _APPROVALS:
        return ACTIVE
    if kind in _STATUS_KINDS:
        return _STATUS_KINDS[kind]
    subscription = data.get("subscription") or {}
    return _STATUS_CATEGORY.get(subscription.get("status") or "")


def subscriber_code(data: dict[str, Any]) -> str | None:
    return (data.get("subscription") or {}).get("subscriber_code")


def merge_register(
    current: dict[str, Any] | None, data: dict[str, Any], source: str
) -> dict[str, Any] | None:
    """The register after one event (None: unchanged). Newer event time wins; ties keep the current."""
    status = subscription_status(data)
    if status is None:
        return None
    at = data["occurred_at"]
    if current is not None and current.get("at", "") >= at:
        return None
    product = data.get("product") or {}
    return {
        "status": status,
        "at": at,
        "source": source,
        "event_id": data["hotmart"]["event_id"],
        "product_id": product.get("id"),
    }


def recovered_earlier(
    kind: str, status: str | None, fact: dict[str, Any] | None, register: dict[str, Any] | None
) -> bool:
    """Did reconciliation or backfill already publish what this webhook says?"""
    if fact is not None and fact.get("source") in RECOVERY_SOURCES:
        return True
    return (
        kind in _STATUS_KINDS
        and register is not None
        and register.get("status") == status
        and register.get("source") in RECOVERY_SOURCES
    )
