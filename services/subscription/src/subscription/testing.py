"""Builders of schema-valid event data for tests (this service's, and end-to-end tests of others)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from coursebridge.events import Event, new_event
from coursebridge.events.catalogue import PRODUCT_MAPPED
from coursebridge.events.payments import payment_event_type

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def day(d: float, hours: float = 0) -> datetime:
    """``d`` days after 2025-01-01T00:00Z: tests speak in days."""
    return T0 + timedelta(days=d, hours=hours)


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


PURCHASE_KINDS_WITH_PURCHASE = frozenset(
    {
        "purchase_approved",
        "purchase_complete",
        "purchase_delayed",
        "purchase_refunded",
        "purchase_chargeback",
        "purchase_protest",
        "purchase_canceled",
    }
)
_PURCHASE_STATUS = {
    "purchase_approved": "approved",
    "purchase_complete": "complete",
    "purchase_delayed": "overdue",
    "purchase_refunded": "refunded",
    "purchase_chargeback": "chargeback",
    "purchase_protest": "dispute",
    "purchase_canceled": "canceled",
}


def payment_data(
    kind: str,
    at: str,
    *,
    event_id: str | None = None,
    code: str | None = "SUB-1",
    product: str = "4711",
    transaction: str | None = None,
    email: str | None = "ana.souza@example.com",
    next_charge_at: str | None = None,
    recurrence: int | None = None,
    plan: tuple[str, str] | None = ("101", "Monthly"),
    new_plan: tuple[str, str] | None = None,
    previous_plan: tuple[str, str] | None = None,
    subscription_status: str | None = None,
) -> dict[str, Any]:
    """``payment_event.v1`` data of one kind; ``code=None`` makes a one-off purchase."""
    event_id = event_id or str(uuid.uuid4())
    purchase = None
    if kind in PURCHASE_KINDS_WITH_PURCHASE:
        purchase = {
            "status": _PURCHASE_STATUS[kind],
            "raw_status": _PURCHASE_STATUS[kind].upper(),
            "recurrence_number": recurrence,
            "approved_at": at if kind in ("purchase_approved", "purchase_complete") else None,
            "order_at": at,
            "next_charge_at": next_charge_at if code else None,
            "price": {"value": 49.0, "currency": "BRL"},
            "full_price": {"value": 49.0, "currency": "BRL"},
            "offer_code": None,
            "coupon_code": None,
            "payment_type": "CREDIT_CARD",
            "installments": 1,
            "business_model": "R" if code else "I",
            "is_subscription": code is not None,
            "country_iso": "BR",
        }
    subscription = None
    if code is not None:
        subscription = {
            "subscriber_code": code,
            "subscription_id": None,
            "status": subscription_status,
            "raw_status": subscription_status.upper() if subscription_status else None,
            "plan": {"id": plan[0], "name": plan[1]} if plan else None,
            "next_charge_at": next_charge_at,
            "cancelled_at": at if kind == "subscription_cancellation" else None,
        }
    plan_switch = None
    if kind == "switch_plan":
        plan_switch = {
            "switched_at": at,
            "new_plan": {"id": new_plan[0], "name": new_plan[1]} if new_plan else None,
            "previous_plan": {"id": previous_plan[0], "name": previous_plan[1]} if previous_plan else None,
        }
    ordering_key = transaction or (f"subscriber:{code}" if code else f"event:{event_id}")
    return {
        "hotmart": {"event_id": event_id, "event": kind.upper(), "version": "2.0.0", "created_at": at},
        "kind": kind,
        "occurred_at": at,
        "transaction": transaction,
        "product": {"id": product, "ucode": None, "name": "Membership"},
        "buyer": {"email": email, "name": None, "first_name": None, "last_name": None} if email else None,
        "purchase": purchase,
        "commissions": [],
        "subscription": subscription,
        "plan_switch": plan_switch,
        "member": None,
        "ordering_key": ordering_key,
    }


def payment_event(data: dict[str, Any]) -> Event:
    return new_event(
        payment_event_type(data["kind"]),
        data,
        source="coursebridge/ingest",
        correlation_id=data["ordering_key"],
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, data["hotmart"]["event_id"])),
    )


def catalogue_data(
    product: str = "4711",
    *,
    access_days: int | None = None,
    grace_days: int | None = None,
    revision: int = 1,
    changed_at: str = "2025-01-01T00:00:00.000Z",
) -> dict[str, Any]:
    return {
        "product_id": product,
        "course_ids": ["7"],
        "plans": {},
        "access_days": access_days,
        "grace_days": grace_days,
        "revision": revision,
        "changed_at": changed_at,
        "removed": False,
    }


def catalogue_event(data: dict[str, Any]) -> Event:
    return new_event(
        PRODUCT_MAPPED, data, source="coursebridge/enrollment", correlation_id=data["product_id"]
    )
