"""Translate received events (payment_event.v1, subscription_access.v1) into saga signals. Pure."""

from __future__ import annotations

from typing import Any

from coursebridge.events.access import ACCESS_EXPIRED, ACCESS_RESTORED, ACCESS_SUSPENDED, PLAN_CHANGED
from enrollment.domain.access import GRANTING_KINDS, REVOKING_KINDS, Signal, SignalKind
from enrollment.domain.ids import access_id_for, normalise_email

ACCESS_SIGNALS: dict[str, SignalKind] = {
    ACCESS_SUSPENDED: "deactivate",
    ACCESS_EXPIRED: "deactivate",
    ACCESS_RESTORED: "reactivate",
    PLAN_CHANGED: "plan_change",
}


class NotActionable(ValueError):
    """The event concerns the saga but lacks what it needs (no transaction nor subscriber code...)."""


def _split_name(buyer: dict[str, Any]) -> tuple[str | None, str | None]:
    first, last = buyer.get("first_name"), buyer.get("last_name")
    if first or last:
        return first, last
    name = (buyer.get("name") or "").strip()
    if not name:
        return None, None
    head, _, tail = name.partition(" ")
    return head, tail or None


def payment_signal(event_id: str, data: dict[str, Any]) -> Signal | None:
    """The signal of a payment event, or None when the saga ignores its kind."""
    kind = data.get("kind")
    if kind in GRANTING_KINDS:
        signal_kind: SignalKind = "grant"
        reason = kind.replace("_", " ")
    elif kind in REVOKING_KINDS:
        signal_kind = "revoke"
        reason = REVOKING_KINDS[kind]
    else:
        return None
    product_id = (data.get("product") or {}).get("id")
    subscription = data.get("subscription") or {}
    access_id = access_id_for(data.get("transaction"), subscription.get("subscriber_code"), product_id)
    if access_id is None:
        raise NotActionable(f"{kind} without a transaction or subscriber code")
    buyer = data.get("buyer") or {}
    email = buyer.get("email")
    if signal_kind == "grant" and not email:
        raise NotActionable(f"{kind} without a buyer e-mail: no student to enroll")
    if signal_kind == "grant" and not product_id:
        raise NotActionable(f"{kind} without a product")
    first, last = _split_name(buyer)
    return Signal(
        kind=signal_kind,
        access_id=access_id,
        at=data["occurred_at"],
        event_id=event_id,
        reason=reason,
        product_id=product_id,
        transaction=data.get("transaction"),
        plan_id=(subscription.get("plan") or {}).get("id"),
        email=normalise_email(email) if email else None,
        first_name=first,
        last_name=last,
    )


def access_signal(event_type: str, event_id: str, data: dict[str, Any]) -> Signal | None:
    """The signal of a subscription access event. Its ``version`` (0 when the producer sent none) and
    announced state let the subscription service's latest decision win over business times."""
    kind = ACCESS_SIGNALS.get(event_type)
    if kind is None:
        return None
    email = data.get("email")
    return Signal(
        kind=kind,
        access_id=data["access_id"],
        at=data["effective_at"],
        event_id=event_id,
        reason=f"access {data['state']}: {data['reason']}",
        product_id=data.get("product_id"),
        transaction=data.get("transaction"),
        plan_id=data.get("plan_id"),
        email=normalise_email(email) if email else None,
        version=int(data.get("version") or 0),
        access_state=data.get("state"),
    )
