"""Helpers shared by the enrollment tests (imported by path: the test run uses importlib mode).

Payment events are built the way production builds them: a Hotmart sample body normalised by ingest.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from coursebridge.events import Event, new_event
from coursebridge.events.envelope import format_time
from coursebridge.ports import Delivery

BASE_TIME = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
ADMIN_TOKEN = "test-admin-token"


def sample(name: str) -> dict[str, Any]:
    text = resources.files("ingest.samples").joinpath(f"{name}.json").read_text("utf-8")
    return json.loads(text)


def hotmart_body(
    event: str = "PURCHASE_APPROVED",
    *,
    transaction: str = "HP1",
    product: str = "4711",
    email: str = "ana.souza@example.com",
    subscriber: str | None = None,
    plan: str | None = None,
    second: int = 0,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A Hotmart purchase webhook body for one purchase (one-off, or a subscription with ``subscriber``)."""
    body = copy.deepcopy(sample("purchase_approved_one_off"))
    body["id"] = event_id or str(uuid.uuid4())
    body["event"] = event
    body["creation_date"] = int((BASE_TIME + timedelta(seconds=second)).timestamp() * 1000)
    data = body["data"]
    data["product"]["id"] = int(product) if product.isdigit() else product
    data["buyer"]["email"] = email
    data["purchase"]["transaction"] = transaction
    data["purchase"]["status"] = {"PURCHASE_REFUNDED": "REFUNDED", "PURCHASE_CHARGEBACK": "CHARGEBACK"}.get(
        event, "APPROVED"
    )
    if subscriber:
        data["subscription"] = {
            "status": "ACTIVE",
            "plan": {"id": int(plan or 101), "name": "Monthly"},
            "subscriber": {"code": subscriber},
        }
        data["purchase"]["business_model"] = "R"
    return body


def payment_event(event: str = "PURCHASE_APPROVED", **options: Any) -> Event:
    from ingest.domain.hotmart import normalise

    normalised = normalise(hotmart_body(event, **options))
    return new_event(
        normalised.event_type,
        normalised.data,
        source="coursebridge/ingest",
        correlation_id=normalised.ordering_key,
        subject=normalised.subject,
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, normalised.event_id)),
        time=normalised.occurred_at,
    )


def access_event(
    event_type: str,
    *,
    access_id: str = "sub:SUB-1:4711",
    product: str = "4711",
    plan: str | None = "101",
    previous_plan: str | None = None,
    email: str | None = "ana.souza@example.com",
    state: str = "suspended",
    second: int = 0,
) -> Event:
    data = {
        "access_id": access_id,
        "subscriber_code": access_id.split(":")[1] if access_id.startswith("sub:") else None,
        "transaction": None,
        "product_id": product,
        "plan_id": plan,
        "previous_plan_id": previous_plan,
        "email": email,
        "state": state,
        "reason": "test",
        "effective_at": format_time(BASE_TIME + timedelta(seconds=second)),
        "paid_through": None,
    }
    return new_event(event_type, data, source="coursebridge/subscription", correlation_id=access_id)


def delivery(subscription: str = "enrollment.payments", attempt: int = 1) -> Delivery:
    return Delivery(
        subscription=subscription, message_id=uuid.uuid4().hex, attempt=attempt, ordering_key=None
    )
