"""Synthetic but contract-shaped events for tests, the benchmark and demo dashboards.

Buyers purchase one-off products or subscribe (monthly renewals with ``recurrence_number``); some
purchases are refunded or charged back, some subscriptions stop renewing. Deterministic for a seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from coursebridge.events import Event

PRODUCTS = {  # product id -> (name, price by currency, subscription?)
    "4711": ("CourseBridge Academy Membership", {"BRL": "49.90", "USD": "9.90"}, True),
    "4712": ("Spreadsheet Mastery", {"BRL": "297.00", "USD": "59.00"}, False),
    "4713": ("Watercolour Basics", {"BRL": "197.00", "USD": "39.00"}, False),
}
_NAMESPACE = uuid.UUID("7d0c8a0e-2f7e-4c4b-9a53-5b1f3c0a9e11")


_STATUS = {
    "purchase_approved": "approved",
    "purchase_complete": "complete",
    "purchase_refunded": "refunded",
    "purchase_chargeback": "chargeback",
}
# Producer commissions of USD sales are paid in BRL at this made-up rate (a producer in Brazil).
USD_COMMISSION_IN_BRL = Decimal("5.40")


def payment_event(
    kind: str,
    *,
    event_id: str,
    at: datetime,
    transaction: str,
    product: str,
    currency: str,
    price: str | Decimal,
    email: str = "buyer@example.com",
    name: str = "Buyer Person",
    recurrence: int | None = None,
    subscriber: str | None = None,
    status: str | None = None,
    full_price: str | Decimal | None = None,
    producer: tuple[str | Decimal, str] | None = None,
    hotmart_id: str | None = None,
) -> Event:
    """A contract-shaped ``coursebridge.payment.<kind>.v1`` event (``payment_event.v1``).

    ``producer`` is the PRODUCER commission as (value, currency); by default 85 % of the price in the
    price's currency.
    """
    value = Decimal(str(price))
    if producer is None:
        producer = ((value * Decimal("0.85")).quantize(Decimal("0.01")), currency)
    producer_value, producer_currency = Decimal(str(producer[0])), producer[1]
    paid = Decimal(str(full_price)) if full_price is not None else value
    occurred = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    status = status or _STATUS.get(kind, "unknown")
    data: dict[str, Any] = {
        "hotmart": {
            "event_id": hotmart_id or f"syn-{event_id}",
            "event": kind.upper(),
            "version": "2.0.0",
            "created_at": occurred,
        },
        "kind": kind,
        "occurred_at": occurred,
        "transaction": transaction,
        "product": {"id": product, "ucode": None, "name": PRODUCTS.get(product, (f"Product {product}",))[0]},
        "buyer": {"email": email, "name": name, "first_name": name.split()[0], "last_name": name.split()[-1]},
        "purchase": {
            "status": status,
            "raw_status": status.upper(),
            "recurrence_number": recurrence,
            "approved_at": occurred,
            "order_at": occurred,
            "next_charge_at": None,
            "price": {"value": float(value), "currency": currency},
            "full_price": {"value": float(paid), "currency": currency},
            "offer_code": f"off{product}",
            "coupon_code": None,
            "payment_type": "CREDIT_CARD",
            "installments": 1,
            "business_model": "I",
            "is_subscription": subscriber is not None,
            "country_iso": "BR",
        },
        "commissions": [
            {"source": "MARKETPLACE", "value": float(round(value * Decimal("0.1"), 2)), "currency": currency},
            {"source": "PRODUCER", "value": float(producer_value), "currency": producer_currency},
        ],
        "subscription": None
        if subscriber is None
        else {
            "subscriber_code": subscriber,
            "subscription_id": None,
            "status": "active",
            "raw_status": "ACTIVE",
            "plan": {"id": "101", "name": "Monthly"},
            "next_charge_at": None,
            "cancelled_at": None,
        },
        "plan_switch": None,
        "member": None,
        "ordering_key": transaction,
    }
    return Event(
        type=f"coursebridge.payment.{kind}.v1",
        source="coursebridge/ingest",
        data=data,
        correlation_id=transaction,
        subject=transaction,
        id=event_id,
        time=at,
        dataschema="urn:coursebridge:schema:payment_event.v1",
    )


def _payment(kind: str, *, seq: int, currency: str, price: str, **fields: Any) -> Event:
    """The generator's payments: ids from the sequence; USD sales pay the producer in BRL."""
    producer = None
    if currency == "USD":
        producer = (
            (Decimal(price) * Decimal("0.85") * USD_COMMISSION_IN_BRL).quantize(Decimal("0.01")),
            "BRL",
        )
    return payment_event(
        kind,
        event_id=str(uuid.uuid5(_NAMESPACE, f"{seq}")),
        hotmart_id=f"syn-{seq}",
        currency=currency,
        price=price,
        producer=producer,
        **fields,
    )


def generate_events(
    n: int, *, seed: int = 7, start: datetime | None = None, days: int = 180
) -> Iterator[Event]:
    """About ``n`` payment events (plus a few access and enrollment events), in no particular order."""
    rng = random.Random(seed)
    start = start or datetime(2025, 1, 1, tzinfo=UTC)
    seq = 0
    buyer = 0
    while seq < n:
        buyer += 1
        email = f"Buyer{buyer}@Example.com"
        name = f"Buyer{buyer} Person"
        product = rng.choice(list(PRODUCTS))
        currency = "BRL" if rng.random() < 0.8 else "USD"
        price = PRODUCTS[product][1][currency]
        first = start + timedelta(seconds=rng.randrange(days * 86400))
        if PRODUCTS[product][2]:
            subscriber = f"SUB-{buyer:07d}"
            months = rng.randint(1, 6)
            for month in range(months):
                at = first + timedelta(days=30 * month)
                if at >= start + timedelta(days=days) or seq >= n:
                    break
                transaction = f"HP{buyer:08d}{month:02d}"
                seq += 1
                yield _payment(
                    "purchase_approved",
                    seq=seq,
                    at=at,
                    transaction=transaction,
                    product=product,
                    currency=currency,
                    price=price,
                    email=email,
                    name=name,
                    recurrence=month + 1,
                    subscriber=subscriber,
                )
                if rng.random() < 0.03 and seq < n:
                    seq += 1
                    yield _payment(
                        "purchase_refunded",
                        seq=seq,
                        at=at + timedelta(days=2),
                        transaction=transaction,
                        product=product,
                        currency=currency,
                        price=price,
                        email=email,
                        name=name,
                        recurrence=month + 1,
                        subscriber=subscriber,
                    )
            if seq < n and rng.random() < 0.1:
                seq += 1
                yield _access(seq, first, subscriber, product, email)
        else:
            transaction = f"HP{buyer:08d}00"
            seq += 1
            yield _payment(
                "purchase_approved",
                seq=seq,
                at=first,
                transaction=transaction,
                product=product,
                currency=currency,
                price=price,
                email=email,
                name=name,
                recurrence=None,
                subscriber=None,
            )
            roll = rng.random()
            common = {
                "transaction": transaction,
                "product": product,
                "currency": currency,
                "price": price,
                "email": email,
                "name": name,
            }
            if roll < 0.1 and seq < n:
                # 6 % refunded, 1 % partially refunded, 1 % refunded then charged back, 2 % charged back.
                kind = "purchase_chargeback" if roll >= 0.08 else "purchase_refunded"
                status = "partially_refunded" if 0.06 <= roll < 0.07 else None
                seq += 1
                at = first + timedelta(days=rng.randint(0, 6), hours=3)
                yield _payment(kind, seq=seq, at=at, status=status, **common)
                if 0.07 <= roll < 0.08 and seq < n:
                    seq += 1
                    yield _payment("purchase_chargeback", seq=seq, at=at + timedelta(days=9), **common)
            elif seq < n and first + timedelta(days=30) < start + timedelta(days=days):
                seq += 1  # the warranty ended: PURCHASE_COMPLETE
                yield _payment("purchase_complete", seq=seq, at=first + timedelta(days=30), **common)
            if seq < n and rng.random() < 0.1:
                seq += 1
                yield _enrollment(seq, first, transaction, product, email)


def _access(seq: int, at: datetime, subscriber: str, product: str, email: str) -> Event:
    effective = (at + timedelta(days=40)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Event(
        type="coursebridge.subscription.access_suspended.v1",
        source="coursebridge/subscription",
        data={
            "access_id": f"sub:{subscriber}:{product}",
            "subscriber_code": subscriber,
            "transaction": None,
            "product_id": product,
            "plan_id": "101",
            "previous_plan_id": None,
            "email": email,
            "state": "suspended",
            "reason": "payment overdue",
            "effective_at": effective,
            "paid_through": effective,
        },
        correlation_id=subscriber,
        id=str(uuid.uuid5(_NAMESPACE, f"{seq}")),
        time=at + timedelta(days=40),
    )


def _enrollment(seq: int, at: datetime, transaction: str, product: str, email: str) -> Event:
    occurred = (at + timedelta(seconds=5)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Event(
        type="coursebridge.enrollment.granted.v1",
        source="coursebridge/enrollment",
        data={
            "entitlement_id": f"ent-{seq}",
            "email": email,
            "lms_user_id": "12",
            "course_id": "7",
            "product_id": product,
            "transaction": transaction,
            "access_id": f"tx:{transaction}",
            "reason": None,
            "occurred_at": occurred,
        },
        correlation_id=transaction,
        id=str(uuid.uuid5(_NAMESPACE, f"{seq}")),
        time=at + timedelta(seconds=5),
    )


def learning_event(
    activity: str,
    *,
    activity_id: str,
    at: datetime,
    lms_user_id: str,
    purchases: list[tuple[str, str]],
    course_id: str | None = None,
    observed: datetime | None = None,
    event_id: str | None = None,
) -> Event:
    """A contract-shaped ``coursebridge.learning.<activity>.v1`` event (``learning_activity.v1``).

    ``purchases`` are the (transaction, product id) pairs the activity is attributed to. A replay or
    re-read repeats ``activity_id`` under a new ``event_id``.
    """
    observed = observed or at + timedelta(minutes=15)
    iso = {
        name: moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for name, moment in (("occurred_at", at), ("observed_at", observed))
    }
    return Event(
        type=f"coursebridge.learning.{activity}.v1",
        source="coursebridge/enrollment",
        data={
            "activity_id": activity_id,
            "activity": activity,
            "lms_user_id": lms_user_id,
            "course_id": course_id if activity == "course_completed" else None,
            **iso,
            "purchases": [
                {"access_id": f"tx:{transaction}", "transaction": transaction, "product_id": product}
                for transaction, product in purchases
            ],
        },
        correlation_id=activity_id,
        subject=lms_user_id,
        id=event_id or str(uuid.uuid5(_NAMESPACE, f"{activity_id}@{iso['observed_at']}")),
        time=observed,
        dataschema="urn:coursebridge:schema:learning_activity.v1",
    )


def learning_events_for(
    payments: list[Event], *, seed: int = 11, until: datetime | None = None
) -> list[Event]:
    """Learning activity of the buyers of ``payments``' first charges, as enrollment would publish it.

    About 70 % sign in (mostly within three days of the approval, a few before it), many several times,
    a third of those complete the course; some sign in again after a refund; one activity in ten is
    read twice (same ``activity_id``, new event id). Deterministic for a seed and the payments' order.
    With ``until``, nothing happens after it (data dated up to today has no activity in the future).
    """
    rng = random.Random(seed)
    reversed_at: dict[str, datetime] = {}
    for event in payments:
        if event.data.get("kind") in ("purchase_refunded", "purchase_chargeback"):
            at = _moment(event.data["occurred_at"])
            transaction = event.data["transaction"]
            reversed_at[transaction] = min(at, reversed_at.get(transaction, at))
    out: list[Event] = []
    for event in payments:
        data = event.data
        if data.get("kind") != "purchase_approved" or (data["purchase"].get("recurrence_number") or 1) != 1:
            continue
        transaction, product = data["transaction"], data["product"]["id"]
        user = str(int(transaction[2:10]) if transaction[2:10].isdigit() else abs(hash(transaction)) % 10**6)
        approved = _moment(data["occurred_at"])
        attributed = [(transaction, product)]
        activity: list[tuple[str, datetime, str | None]] = []
        if rng.random() < 0.05:  # signed in before buying (another purchase gave the access)
            activity.append(("signed_in", approved - timedelta(hours=rng.randint(1, 48)), None))
        if rng.random() < 0.7:
            first = approved + timedelta(minutes=rng.randint(1, 72 * 60))
            activity.append(("signed_in", first, None))
            for _ in range(rng.randint(0, 3)):
                activity.append(("signed_in", first + timedelta(hours=rng.randint(1, 30 * 24)), None))
            if rng.random() < 0.35:
                activity.append(("course_completed", first + timedelta(days=rng.randint(3, 40)), "7"))
        if transaction in reversed_at and rng.random() < 0.5:  # still signs in after the refund
            activity.append(("signed_in", reversed_at[transaction] + timedelta(hours=2), None))
        for n, (kind, at, course) in enumerate(activity):
            if until is not None and at + timedelta(hours=6) > until:
                continue
            activity_id = f"la-{kind}-{user}-{course or 0}-{int(at.timestamp())}-{n}"
            common = {"at": at, "lms_user_id": user, "purchases": attributed, "course_id": course}
            out.append(learning_event(kind, activity_id=activity_id, **common))
            if rng.random() < 0.1:  # the timeline read again: same activity, new event id
                out.append(
                    learning_event(kind, activity_id=activity_id, observed=at + timedelta(hours=6), **common)
                )
    return out


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
