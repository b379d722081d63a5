"""Hotmart webhook body -> one normalised payment event (pure domain: no I/O, no framework).

``normalise(body)`` takes the already-parsed JSON body of one Hotmart webhook (any shape) and either
returns a ``NormalisedEvent`` whose ``data`` follows the shared schema ``payment_event.v1``, or raises
``NotNormalisable`` with a precise, human-readable ``reason``. It never raises anything else.

Input tolerance (Hotmart's webhook documentation, checked against real "send test" and production bodies):

* ``creation_date`` or ``creationDate``; dates as epoch milliseconds (int, float or numeric string) or
  ISO-8601 strings (UTC assumed when no zone is given);
* ids as strings or integers (product, plan, subscription and event ids are always output as strings);
* the purchase shape, ``SUBSCRIPTION_CANCELLATION``, ``UPDATE_SUBSCRIPTION_CHARGE_DATE``, ``SWITCH_PLAN``
  and ``CLUB_*`` shapes; unknown event names become kind ``unrecognised`` with whatever can be extracted.

Rejections: body not an object; missing/invalid event id, event name or creation date; ``data`` missing
or not an object; a ``PURCHASE_*`` event without a usable product id, or without a usable transaction
(except ``PURCHASE_OUT_OF_SHOPPING_CART``: an abandoned checkout has no transaction, its data carries
product, buyer, offer and checkout_country only); a subscription-only event (``SUBSCRIPTION_CANCELLATION``,
``SWITCH_PLAN``, ``UPDATE_SUBSCRIPTION_CHARGE_DATE``) without a usable subscriber code; any identifier
(event id, transaction, product/plan/subscription id, subscriber code) longer than 256 characters.

What real bodies taught (and the rules that follow):

* ``purchase.business_model`` says who issues the fiscal invoice (R/A/I), *not* whether the sale recurs:
  a purchase is a subscription charge when it names a subscriber code (``data.subscription.subscriber.code``),
  or, for REST-shaped data, when ``purchase.is_subscription`` is true. A ``recurrence_number`` without a
  subscriber code is flagged (``recurrence_without_subscriber_code``), not guessed;
* statuses come in several spellings (``COMPLETED``, ``BILLET_PRINTED``, ``CANCELED``, ``DELAYED``,
  ``PAST_DUE``...): every documented spelling maps to a value, never to ``unknown``;
* UPDATE_SUBSCRIPTION_CHARGE_DATE puts the plan at ``data.plan`` and may spell its keys in camelCase
  (``dateNextCharge``, ``newChargeDay``, ``oldChargeDay``);
* an amount without ``currency_value`` keeps its value (currency null), a plan without ``id`` keeps its
  name, product ids stay the strings Hotmart sent (``"00000"`` is not ``"0"``);
* an implausible event date (before 2005, or more than a day after the webhook was received) is flagged in
  ``anomalies``; it is nulled, and an implausible creation date is replaced by the reception time, so it can
  never win an event-time comparison;
* Hotmart's "send test" bodies (product 0 / ``"00000"``, the fixed test ucode, transactions, buyer) are
  marked ``test_event``; the intake decides what to do with them.

Anything else that has the wrong type is coerced when the meaning is unambiguous (``"2"`` -> 2) and
nulled otherwise. Free text is truncated to 500 characters. Buyer documents, phones and addresses are
never read, so they can never reach the output.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from coursebridge.events.envelope import format_time
from coursebridge.events.payments import (
    PAYMENT_KINDS,
    PURCHASE_KINDS,
    SUBSCRIPTION_ONLY_KINDS,
    UNRECOGNISED,
    payment_event_type,
)

MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 500
MAX_EMAIL_LENGTH = 320
MAX_COMMISSIONS = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMERIC = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_MAX_NUMERIC_TEXT = 40
_MAX_DATE_TEXT = 64
_MAX_INT = 10**15  # money values and counts beyond this are not numbers Hotmart sends

_CART_ABANDONED = "purchase_out_of_shopping_cart"

# Dates before this are not Hotmart events (the platform did not exist); after now + 1 day, not yet events.
EARLIEST_PLAUSIBLE = datetime(2005, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)

# Hotmart's "send test" bodies: fixed fake product, transactions and buyer (1.0 and 2.0).
TEST_PRODUCT_IDS = frozenset({"0", "00000"})
TEST_PRODUCT_UCODE = "fb056612-bcc6-4217-9e6d-2a5d1110ac2f"
TEST_TRANSACTIONS = frozenset({"HP16015479281022", "HP1121336654889"})
TEST_BUYER_EMAILS = frozenset({"testecomprador271101postman15@example.com"})
_KIND_BY_EVENT_NAME: dict[str, str] = {kind.upper(): kind for kind in PAYMENT_KINDS if kind != UNRECOGNISED}

_PURCHASE_STATUSES: dict[str, str] = {
    "APPROVED": "approved",
    "BLOCKED": "blocked",
    "CANCELLED": "canceled",
    "CANCELED": "canceled",
    "CHARGEBACK": "chargeback",
    "COMPLETE": "complete",
    "DELAYED": "delayed",  # what PURCHASE_DELAYED carries
    "COMPLETED": "complete",
    "EXPIRED": "expired",
    "NO_FUNDS": "no_funds",
    "OVERDUE": "overdue",
    "PARTIALLY_REFUNDED": "partially_refunded",
    "PRE_ORDER": "pre_order",
    "PRINTED_BILLET": "billet_printed",
    "BILLET_PRINTED": "billet_printed",
    "PROCESSING_TRANSACTION": "processing",
    "PROCESSING": "processing",
    "DISPUTE": "dispute",
    "PROTESTED": "dispute",  # the REST spelling of the webhook's DISPUTE
    "REFUNDED": "refunded",
    "STARTED": "started",
    "UNDER_ANALISYS": "under_analysis",  # sic: Hotmart's spelling
    "UNDER_ANALYSIS": "under_analysis",
    "WAITING_PAYMENT": "waiting_payment",
    "WAYTING_PAYMENT": "waiting_payment",  # sic: legacy 1.0 postbacks
}

_SUBSCRIPTION_STATUSES: dict[str, str] = {
    "ACTIVE": "active",
    "INACTIVE": "inactive",
    "DELAYED": "delayed",
    "OVERDUE": "overdue",
    "STARTED": "started",
    "EXPIRED": "expired",
    "PAST_DUE": "past_due",
}
for _spelling in ("CANCELLED_BY_", "CANCELED_BY_"):
    _SUBSCRIPTION_STATUSES[_spelling + "CUSTOMER"] = "canceled_by_customer"
    _SUBSCRIPTION_STATUSES[_spelling + "SELLER"] = "canceled_by_seller"
    _SUBSCRIPTION_STATUSES[_spelling + "VENDOR"] = "canceled_by_seller"
    _SUBSCRIPTION_STATUSES[_spelling + "ADMIN"] = "canceled_by_admin"


class NotNormalisable(ValueError):
    """The body cannot become a payment event; ``reason`` says why (safe to log: no personal data)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class NormalisedEvent:
    """One Hotmart webhook as a CourseBridge payment event, ready to be wrapped in a CloudEvent."""

    event_id: str  # Hotmart's event id: the deduplication key (a resend keeps it)
    event_name: str  # raw Hotmart event name, e.g. "PURCHASE_APPROVED" (may be unknown)
    kind: str  # e.g. "purchase_approved", "unrecognised"
    event_type: str  # e.g. "coursebridge.payment.purchase_approved.v1"
    subject: str  # transaction, else subscriber code, else event id
    ordering_key: str  # transaction, else "subscriber:<code>", else "event:<event id>"
    occurred_at: datetime  # Hotmart's creation date (reception time when implausible), aware, UTC
    data: dict[str, Any] = field(hash=False)  # follows schema payment_event.v1
    test_event: bool = False  # a Hotmart "send test" body: recorded, never granting by default

    @property
    def anomalies(self) -> list[str]:
        return list(self.data.get("anomalies") or [])


class _Dates:
    """Reads event dates and flags the implausible ones (``anomalies``) instead of letting them win."""

    def __init__(self, received_at: datetime | None) -> None:
        self.latest = received_at + FUTURE_TOLERANCE if received_at is not None else None
        self.anomalies: list[str] = []

    def plausible(self, moment: datetime, *, future_allowed: bool = False) -> bool:
        if moment < EARLIEST_PLAUSIBLE:
            return False
        return future_allowed or self.latest is None or moment <= self.latest

    def event_time(self, where: str, *values: object, future_allowed: bool = False) -> str | None:
        """The first usable date among ``values``; an implausible one is flagged and skipped."""
        for value in values:
            moment = _to_datetime(value) if value is not None else None
            if moment is None:
                continue
            if not self.plausible(moment, future_allowed=future_allowed):
                self.flag(f"{where}_implausible")
                continue
            return format_time(moment)
        return None

    def schedule(self, where: str, *values: object) -> str | None:
        """A date that is normally in the future (next charge): only the floor applies."""
        return self.event_time(where, *values, future_allowed=True)

    def flag(self, anomaly: str) -> None:
        if anomaly not in self.anomalies:
            self.anomalies.append(anomaly)


def normalise(
    body: object, *, received_at: datetime | None = None, source: str = "webhook"
) -> NormalisedEvent:
    """Normalise one parsed webhook body; raise ``NotNormalisable`` (and nothing else) when it cannot be.

    ``received_at`` (when the webhook arrived) bounds plausible event dates; ``source`` is recorded in
    the event (``webhook``, ``webhook_v1`` for legacy postbacks).
    """
    if not isinstance(body, Mapping):
        raise NotNormalisable(f"body must be a JSON object, got {_type_name(body)}")

    event_id = _identifier(body.get("id"), "event id", strict=True, allow_int=True)
    if event_id is None:
        raise NotNormalisable("missing event id")

    event_name = _event_name(body.get("event"))
    kind = _KIND_BY_EVENT_NAME.get(event_name.upper(), UNRECOGNISED) if event_name.isascii() else UNRECOGNISED

    dates = _Dates(received_at)
    occurred_at = _creation_date(body)
    if not dates.plausible(occurred_at):
        dates.flag("creation_date_implausible")
        if received_at is not None:
            occurred_at = received_at.astimezone(UTC)  # it cannot have happened after it arrived

    if body.get("data") is None:
        raise NotNormalisable("missing data")
    data = body["data"]
    if not isinstance(data, Mapping):
        raise NotNormalisable(f"data must be an object, got {_type_name(data)}")

    needs_transaction = kind in PURCHASE_KINDS and kind != _CART_ABANDONED
    purchase_block = _purchase_block(data, strict=needs_transaction)
    if purchase_block is None and kind == _CART_ABANDONED:
        # An abandoned checkout has no purchase yet: offer and country sit directly under data.
        purchase_block = {"offer": data.get("offer"), "checkout_country": data.get("checkout_country")}
    subscription_block = _obj(data.get("subscription"))

    transaction = _transaction(purchase_block, strict=needs_transaction)
    product = _product(data, subscription_block, strict=kind in PURCHASE_KINDS)
    subscriber_code = _subscriber_code(data, subscription_block, strict=kind in SUBSCRIPTION_ONLY_KINDS)

    plan_switch = _plan_switch(data, kind, dates)
    subscription = _subscription(
        data, subscription_block, purchase_block, subscriber_code, plan_switch, dates
    )
    purchase = _purchase(purchase_block, subscriber_code, dates)
    buyer = _buyer(data, subscription_block)
    test_event = _is_test(product, transaction, buyer)

    if transaction is not None:
        subject, ordering_key = transaction, transaction
    elif subscriber_code is not None:
        subject, ordering_key = subscriber_code, f"subscriber:{subscriber_code}"
    else:
        subject, ordering_key = event_id, f"event:{event_id}"

    created_at = format_time(occurred_at)
    payload: dict[str, Any] = {
        "hotmart": {
            "event_id": event_id,
            "event": event_name,
            "version": _text(body.get("version")),
            "created_at": created_at,
        },
        "kind": kind,
        "occurred_at": created_at,
        "transaction": transaction,
        "product": product,
        "buyer": buyer,
        "purchase": purchase,
        "commissions": _commissions(data.get("commissions")),
        "subscription": subscription,
        "plan_switch": plan_switch,
        "member": _member(data.get("user")),
        "ordering_key": ordering_key,
        "source": source,
        "test_event": test_event,
        "anomalies": dates.anomalies,
    }
    return NormalisedEvent(
        event_id=event_id,
        event_name=event_name,
        kind=kind,
        event_type=payment_event_type(kind),
        subject=subject,
        ordering_key=ordering_key,
        occurred_at=occurred_at,
        data=payload,
        test_event=test_event,
    )


def _is_test(product: dict[str, Any] | None, transaction: str | None, buyer: dict[str, Any] | None) -> bool:
    """Hotmart's "send test" carries the account's real hottok: recognise it by its fixed fake data."""
    if product is not None and (
        product["id"] in TEST_PRODUCT_IDS or (product["ucode"] or "").lower() == TEST_PRODUCT_UCODE
    ):
        return True
    if transaction is not None and transaction in TEST_TRANSACTIONS:
        return True
    return buyer is not None and buyer["email"] in TEST_BUYER_EMAILS


# --- envelope -------------------------------------------------------------------------------------------


def _event_name(value: object) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise NotNormalisable("missing event name")
    if not isinstance(value, str):
        raise NotNormalisable(f"event name must be a string, got {_type_name(value)}")
    name = _clean(value).strip()
    if len(name) > MAX_ID_LENGTH:
        raise NotNormalisable(f"event name is longer than {MAX_ID_LENGTH} characters")
    return name


def _creation_date(body: Mapping[Any, Any]) -> datetime:
    for key in ("creation_date", "creationDate"):
        value = body.get(key)
        if value is not None:
            moment = _to_datetime(value)
            if moment is None:
                raise NotNormalisable(f"{key} is not a date: {_preview(value)}")
            return moment
    raise NotNormalisable("missing creation_date")


# --- identity -------------------------------------------------------------------------------------------


def _purchase_block(data: Mapping[Any, Any], *, strict: bool) -> Mapping[Any, Any] | None:
    value = data.get("purchase")
    if isinstance(value, Mapping):
        return value
    if strict:
        if value is None:
            raise NotNormalisable("missing data.purchase")
        raise NotNormalisable(f"data.purchase must be an object, got {_type_name(value)}")
    return None


def _transaction(purchase_block: Mapping[Any, Any] | None, *, strict: bool) -> str | None:
    value = purchase_block.get("transaction") if purchase_block is not None else None
    transaction = _identifier(value, "data.purchase.transaction", strict=strict, allow_int=False)
    if transaction is None and strict:
        raise NotNormalisable("missing data.purchase.transaction")
    return transaction


def _product(
    data: Mapping[Any, Any], subscription_block: Mapping[Any, Any] | None, *, strict: bool
) -> dict[str, Any] | None:
    where = "data.product"
    block = data.get("product")
    if block is None and subscription_block is not None and subscription_block.get("product") is not None:
        where, block = "data.subscription.product", subscription_block.get("product")
    if not isinstance(block, Mapping):
        if strict:
            if block is None:
                raise NotNormalisable("missing data.product")
            raise NotNormalisable(f"data.product must be an object, got {_type_name(block)}")
        return None
    product_id = _identifier(block.get("id"), f"{where}.id", strict=strict, allow_int=True)
    if product_id is None:
        if strict:
            raise NotNormalisable(f"missing {where}.id")
        return None
    return {"id": product_id, "ucode": _text(block.get("ucode")), "name": _text(block.get("name"))}


def _subscriber_code(
    data: Mapping[Any, Any], subscription_block: Mapping[Any, Any] | None, *, strict: bool
) -> str | None:
    candidates: list[tuple[str, object]] = []
    if subscription_block is not None:
        subscriber = _obj(subscription_block.get("subscriber"))
        if subscriber is not None:
            candidates.append(("data.subscription.subscriber.code", subscriber.get("code")))
        candidates.append(("data.subscription.subscriber_code", subscription_block.get("subscriber_code")))
    subscriber = _obj(data.get("subscriber"))
    if subscriber is not None:
        candidates.append(("data.subscriber.code", subscriber.get("code")))
    for where, value in candidates:
        if value is None:
            continue
        code = _identifier(value, where, strict=strict, allow_int=False)
        if code is not None:
            return code
    if strict:
        raise NotNormalisable(
            "missing subscriber code (data.subscriber.code, data.subscription.subscriber.code "
            "or data.subscription.subscriber_code)"
        )
    return None


# --- blocks ---------------------------------------------------------------------------------------------


def _purchase(
    block: Mapping[Any, Any] | None, subscriber_code: str | None, dates: _Dates
) -> dict[str, Any] | None:
    if block is None:
        return None
    raw_status = _text(block.get("status"))
    offer = _obj(block.get("offer")) or {}
    payment = _obj(block.get("payment")) or {}
    country = _obj(block.get("checkout_country")) or {}
    business_model = _text(block.get("business_model"))  # fiscal invoice issuer: says nothing of recurrence
    recurrence_number = _count(block.get("recurrence_number"))
    if recurrence_number is None:
        recurrence_number = _count(block.get("recurrency_number"))  # the REST spelling
    is_subscription = subscriber_code is not None or _flag(block.get("is_subscription")) is True
    if not is_subscription and recurrence_number is not None:
        dates.flag("recurrence_without_subscriber_code")
    return {
        "status": _status(raw_status, _PURCHASE_STATUSES),
        "raw_status": raw_status,
        "recurrence_number": recurrence_number,
        "approved_at": dates.event_time("approved_date", block.get("approved_date")),
        "order_at": dates.event_time("order_date", block.get("order_date")),
        "next_charge_at": dates.schedule("date_next_charge", block.get("date_next_charge")),
        "price": _money(block.get("price")),
        "full_price": _money(block.get("full_price")),
        "offer_code": _text(offer.get("code")),
        "coupon_code": _text(offer.get("coupon_code")),
        "payment_type": _text(payment.get("type")),
        "installments": _count(payment.get("installments_number")),
        "business_model": business_model,
        "is_subscription": is_subscription,
        "country_iso": _text(country.get("iso")),
    }


def _subscription(
    data: Mapping[Any, Any],
    block: Mapping[Any, Any] | None,
    purchase_block: Mapping[Any, Any] | None,
    subscriber_code: str | None,
    plan_switch: dict[str, Any] | None,
    dates: _Dates,
) -> dict[str, Any] | None:
    block = block or {}
    raw_status = _text(block.get("status"))
    # UPDATE_SUBSCRIPTION_CHARGE_DATE documents the plan at data.plan, next to data.subscription.
    plan = _plan(block.get("plan")) or _plan(data.get("plan"))
    if plan is None and plan_switch is not None:
        plan = plan_switch["new_plan"]
    subscription_id = _identifier(block.get("id"), "data.subscription.id", strict=False, allow_int=True)
    next_charge_at = dates.schedule(
        "date_next_charge",
        block.get("date_next_charge"),
        block.get("dateNextCharge"),
        data.get("date_next_charge"),
        data.get("dateNextCharge"),
    )
    cancelled_at = dates.event_time(
        "cancellation_date", data.get("cancellation_date"), block.get("cancellation_date")
    )
    new_day = _charge_day(block, data, "new_charge_day", "newChargeDay")
    old_day = _charge_day(block, data, "old_charge_day", "oldChargeDay", "previous_charge_day")
    if all(
        v is None
        for v in (subscriber_code, subscription_id, raw_status, plan, next_charge_at, cancelled_at, new_day)
    ):
        return None
    if next_charge_at is None and purchase_block is not None:
        next_charge_at = dates.schedule("date_next_charge", purchase_block.get("date_next_charge"))
    subscription: dict[str, Any] = {
        "subscriber_code": subscriber_code,
        "subscription_id": subscription_id,
        "status": _status(raw_status, _SUBSCRIPTION_STATUSES),
        "raw_status": raw_status,
        "plan": plan,
        "next_charge_at": next_charge_at,
        "cancelled_at": cancelled_at,
    }
    if new_day is not None or old_day is not None:
        subscription["charge_day"] = {"old": old_day, "new": new_day}
    return subscription


def _charge_day(block: Mapping[Any, Any], data: Mapping[Any, Any], *keys: str) -> int | None:
    for source in (block, data):
        for key in keys:
            day = _count(source.get(key))
            if day is not None and 1 <= day <= 31:
                return day
    return None


def _plan_switch(data: Mapping[Any, Any], kind: str, dates: _Dates) -> dict[str, Any] | None:
    plans = data.get("plans")
    if kind != "switch_plan" and not isinstance(plans, list) and data.get("switch_plan_date") is None:
        return None
    new_plan: dict[str, Any] | None = None
    previous_plan: dict[str, Any] | None = None
    if isinstance(plans, list):
        for entry in plans:
            if not isinstance(entry, Mapping):
                continue
            plan = _plan(entry)
            current = _flag(entry.get("current"))
            if plan is None or current is None:
                continue
            if current and new_plan is None:
                new_plan = plan
            elif not current and previous_plan is None:
                previous_plan = plan
    return {
        "switched_at": dates.event_time("switch_plan_date", data.get("switch_plan_date")),
        "new_plan": new_plan,
        "previous_plan": previous_plan,
    }


def _buyer(data: Mapping[Any, Any], subscription_block: Mapping[Any, Any] | None) -> dict[str, Any] | None:
    # Only e-mail and names are ever read: documents, phones and addresses cannot leak.
    sources = [_obj(data.get("buyer")), _obj(data.get("subscriber"))]
    if subscription_block is not None:
        sources += [_obj(subscription_block.get("subscriber")), _obj(subscription_block.get("user"))]
    people = [source for source in sources if source is not None]
    buyer = {
        "email": _first(_email(person.get("email")) for person in people),
        "name": _first(_text(person.get("name")) for person in people),
        "first_name": _first(_text(person.get("first_name")) for person in people),
        "last_name": _first(_text(person.get("last_name")) for person in people),
    }
    return buyer if any(value is not None for value in buyer.values()) else None


def _member(value: object) -> dict[str, Any] | None:
    user = _obj(value)
    if user is None:
        return None
    member = {"email": _email(user.get("email")), "name": _text(user.get("name"))}
    return member if any(v is not None for v in member.values()) else None


def _commissions(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list | tuple):
        return []
    commissions = []
    for entry in value:
        if len(commissions) >= MAX_COMMISSIONS:
            break
        if not isinstance(entry, Mapping):
            continue
        source = _text(entry.get("source"))
        amount = _number(entry.get("value"))
        if source is None or amount is None:
            continue
        currency = _currency(entry.get("currency_value"))
        if currency is None:
            currency = _currency(entry.get("currency"))
        commissions.append({"source": source, "value": amount, "currency": currency})
    return commissions


def _plan(value: object) -> dict[str, Any] | None:
    block = _obj(value)
    if block is None:
        return None
    plan_id = _identifier(block.get("id"), "plan id", strict=False, allow_int=True)
    name = _text(block.get("name"))
    if plan_id is None and name is None:
        return None
    return {"id": plan_id, "name": name}  # a plan Hotmart names without an id keeps its name


def _money(value: object) -> dict[str, Any] | None:
    block = _obj(value)
    if block is None:
        return None
    amount = _number(block.get("value"))
    currency = _currency(block.get("currency_value"))
    if currency is None:
        currency = _currency(block.get("currency"))
    if amount is None:
        return None
    return {"value": amount, "currency": currency}  # an amount without a currency keeps its value


def _status(raw: str | None, table: Mapping[str, str]) -> str | None:
    if raw is None:
        return None
    key = raw.strip().upper().replace(" ", "_").replace("-", "_")
    return table.get(key, "unknown")


# --- scalar coercion ------------------------------------------------------------------------------------


def _identifier(value: object, what: str, *, strict: bool, allow_int: bool) -> str | None:
    """A non-empty id string, or ``None`` when absent (or of the wrong type and not ``strict``).

    Ids longer than ``MAX_ID_LENGTH`` are always rejected: they are not ids but garbage or an attack.
    """
    if value is None:
        return None
    text: str | None = None
    if isinstance(value, str):
        text = _clean(value).strip()
    elif allow_int and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**MAX_ID_LENGTH:
            raise NotNormalisable(f"{what} is longer than {MAX_ID_LENGTH} characters")
        text = str(value)
    elif allow_int and isinstance(value, float) and value.is_integer():
        if abs(value) >= 10.0**MAX_ID_LENGTH:
            raise NotNormalisable(f"{what} is longer than {MAX_ID_LENGTH} characters")
        text = str(int(value))
    else:
        if strict:
            expected = "a string or an integer" if allow_int else "a string"
            raise NotNormalisable(f"{what} must be {expected}, got {_type_name(value)}")
        return None
    if not text:
        return None
    if len(text) > MAX_ID_LENGTH:
        raise NotNormalisable(f"{what} is longer than {MAX_ID_LENGTH} characters")
    return text


def _text(value: object, limit: int = MAX_TEXT_LENGTH) -> str | None:
    """Free text: stripped, truncated to ``limit``; numbers become their decimal text; other types None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if abs(value) < _MAX_INT else None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = _clean(value).strip()[:limit].strip()
    return text or None


def _email(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    email = _clean(value).strip().lower()
    if not email or len(email) > MAX_EMAIL_LENGTH or "@" not in email or any(c.isspace() for c in email):
        return None
    return email


def _currency(value: object) -> str | None:
    text = _text(value, limit=16)
    return text.upper() if text is not None else None


def _number(value: object) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < _MAX_INT else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if len(text) <= _MAX_NUMERIC_TEXT and _NUMERIC.fullmatch(text):
            number = float(text) if "." in text else int(text)
            return _number(number)
    return None


def _count(value: object) -> int | None:
    """A non-negative whole number (recurrence number, installments), else None."""
    if isinstance(value, bool):
        return None
    number: object = value
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_NUMERIC_TEXT or not _INTEGER.fullmatch(text):
            return None
        number = int(text)
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        number = int(number)
    if isinstance(number, int) and 0 <= number < _MAX_INT:
        return number
    return None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _to_datetime(value: object) -> datetime | None:
    """Epoch milliseconds (int, float, numeric string) or ISO-8601 (UTC when no zone); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _from_epoch_ms(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > _MAX_DATE_TEXT:
        return None
    if _NUMERIC.fullmatch(text):
        return _from_epoch_ms(float(text) if "." in text else int(text))
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _from_epoch_ms(value: float) -> datetime | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except (OverflowError, ValueError):
        return None


# --- helpers --------------------------------------------------------------------------------------------


def _obj(value: object) -> Mapping[Any, Any] | None:
    return value if isinstance(value, Mapping) else None


def _first(values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _clean(text: str) -> str:
    """Drop what cannot be encoded as UTF-8 (lone surrogates from ``\\ud800`` escapes) so output is valid."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _preview(value: object) -> str:
    """A short, safe rendering of a rejected value for a reason message."""
    if isinstance(value, str):
        text = _clean(value)
        return repr(text) if len(text) <= 60 else repr(text[:60]) + "..."
    if isinstance(value, bool) or (isinstance(value, int) and abs(value) < 10**30):
        return repr(value).lower() if isinstance(value, bool) else repr(value)
    if isinstance(value, float):
        return repr(value)
    return f"a value of type {_type_name(value)}"


__all__ = [
    "EARLIEST_PLAUSIBLE",
    "MAX_ID_LENGTH",
    "MAX_TEXT_LENGTH",
    "NormalisedEvent",
    "NotNormalisable",
    "normalise",
]
