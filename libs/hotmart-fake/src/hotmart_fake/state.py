"""What the fake Hotmart holds: sales, subscriptions, credentials, tokens and the rate-limit window.

Behaviour follows Hotmart's documentation (and what was observed against production, where the docs are
silent): tokens expire after ``expires_in`` seconds; 500 calls per minute, reads and writes together,
then 429 ``too_many_requests`` with ``RateLimit-*`` headers; sales history returns only APPROVED and
COMPLETE sales unless ``transaction`` or ``transaction_status`` is given; cursor pagination with an opaque
``page_token`` and a silently capped ``max_results``; subscriptions default to ``accession_date`` = now
- 30 days. Where Hotmart is unconfirmed the fake takes the reading that is hardest on a client: sales
history filters its dates on the *order* date (so a late refund of an old sale needs a wide window).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DAY_MS = 86_400_000
DEFAULT_STATUSES = ("APPROVED", "COMPLETE")
_WEBHOOK_NAMESPACE = uuid.UUID("0b6a4f59-8a5f-4d67-9d0e-52c1a3e5f0aa")

# REST status -> (webhook event, webhook purchase.status spelling)
WEBHOOK_OF_STATUS: dict[str, tuple[str, str]] = {
    "APPROVED": ("PURCHASE_APPROVED", "APPROVED"),
    "COMPLETE": ("PURCHASE_COMPLETE", "COMPLETED"),
    "CANCELLED": ("PURCHASE_CANCELED", "CANCELED"),
    "REFUNDED": ("PURCHASE_REFUNDED", "REFUNDED"),
    "CHARGEBACK": ("PURCHASE_CHARGEBACK", "CHARGEBACK"),
    "PROTESTED": ("PURCHASE_PROTEST", "DISPUTE"),
    "EXPIRED": ("PURCHASE_EXPIRED", "EXPIRED"),
    "PRINTED_BILLET": ("PURCHASE_BILLET_PRINTED", "BILLET_PRINTED"),
    "OVERDUE": ("PURCHASE_DELAYED", "DELAYED"),
}


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Sale:
    """One transaction as GET /payments/api/v1/sales/history describes it; ``history`` its status changes."""

    transaction: str
    product_id: int
    buyer_email: str
    status: str = "APPROVED"
    order_date: int = field(default_factory=now_ms)
    approved_date: int | None = None
    price: float = 97.0
    currency: str = "BRL"
    product_name: str = "Course"
    buyer_name: str = "Buyer"
    recurrency_number: int | None = None
    subscriber_code: str | None = None  # links a subscription charge to its subscription
    offer_code: str = "off00001"
    payment_type: str = "CREDIT_CARD"
    history: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.approved_date is None and self.status not in ("PRINTED_BILLET", "CANCELLED", "EXPIRED"):
            self.approved_date = self.order_date + 1000
        if not self.history:
            if self.status in ("APPROVED", "PRINTED_BILLET", "CANCELLED", "EXPIRED"):
                self.history = [(self.status, self.approved_date or self.order_date)]
            else:  # a sale refunded, completed... was approved first
                self.history = [("APPROVED", self.approved_date or self.order_date), (self.status, now_ms())]

    def set_status(self, status: str, at: int | None = None) -> None:
        self.status = status
        self.history.append((status, at or now_ms()))

    def rest_item(self) -> dict[str, Any]:
        return {
            "product": {"id": self.product_id, "name": self.product_name},
            "buyer": {"name": self.buyer_name, "ucode": _ucode(self.buyer_email), "email": self.buyer_email},
            "producer": {"name": "Fake Producer", "ucode": "00000000-0000-4000-8000-00000000f00d"},
            "purchase": {
                "transaction": self.transaction,
                "order_date": self.order_date,
                "approved_date": self.approved_date,
                "status": self.status,
                "recurrency_number": self.recurrency_number,
                "is_subscription": self.subscriber_code is not None,
                "commission_as": "PRODUCER",
                "price": {"value": self.price, "currency_code": self.currency},
                "payment": {"method": self.payment_type, "installments_number": 1, "type": self.payment_type},
                "tracking": {"source": None, "source_sck": None, "external_code": None},
                "warranty_expire_date": self.order_date + 7 * DAY_MS,
                "offer": {
                    "payment_mode": "SUBSCRIPTION" if self.subscriber_code else "UNIQUE_PAYMENT",
                    "code": self.offer_code,
                },
                "hotmart_fee": {"total": 9.9, "fixed": 1.0, "base": self.price, "percentage": 9.9},
            },
        }


@dataclass
class Subscription:
    """One subscription as GET /payments/api/v1/subscriptions describes it."""

    subscriber_code: str
    product_id: int
    email: str
    status: str = "ACTIVE"
    subscription_id: int = field(default_factory=lambda: secrets.randbelow(10**8))
    transaction: str | None = None
    plan_id: int = 1
    plan_name: str = "Monthly"
    recurrency_period: int = 30
    accession_date: int = field(default_factory=now_ms)
    date_next_charge: int | None = None
    end_accession_date: int | None = None  # when the cancellation was asked
    price: float = 49.9
    product_name: str = "Membership"
    name: str = "Subscriber"

    def __post_init__(self) -> None:
        if self.date_next_charge is None:
            self.date_next_charge = self.accession_date + self.recurrency_period * DAY_MS

    def cancel(self, at: int | None = None, status: str = "CANCELLED_BY_CUSTOMER") -> None:
        self.status = status
        self.end_accession_date = at or now_ms()

    def rest_item(self) -> dict[str, Any]:
        return {
            "subscriber_code": self.subscriber_code,
            "subscription_id": self.subscription_id,
            "status": self.status,
            "accession_date": self.accession_date,
            "end_accession_date": self.end_accession_date,
            "request_date": self.accession_date,
            "date_next_charge": self.date_next_charge,
            "trial": False,
            "transaction": self.transaction,
            "plan": {"name": self.plan_name, "id": self.plan_id, "recurrency_period": self.recurrency_period},
            "product": {
                "id": self.product_id,
                "name": self.product_name,
                "ucode": _ucode(str(self.product_id)),
            },
            "price": {"value": self.price, "currency_code": "BRL"},
            "subscriber": {"name": self.name, "email": self.email, "ucode": _ucode(self.email)},
        }


class HotmartState:
    """Thread-safe; ``clock`` (seconds) is injectable so tests can expire tokens and windows."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        rate_limit: int = 500,
        rate_window_seconds: float = 60.0,
        token_lifetime: int = 172_799,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.rate_limit = rate_limit
        self.rate_window_seconds = rate_window_seconds
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.lock = threading.RLock()
        self.sales: dict[str, Sale] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.tokens: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self.throttled = 0
        self.max_calls_in_window = 0
        self._window: deque[float] = deque()

    # --- data ---------------------------------------------------------------------------------------

    def add_sale(self, sale: Sale) -> Sale:
        with self.lock:
            self.sales[sale.transaction] = sale
        return sale

    def add_subscription(self, subscription: Subscription) -> Subscription:
        with self.lock:
            self.subscriptions[subscription.subscriber_code] = subscription
        return subscription

    def reset(self) -> None:
        with self.lock:
            self.sales.clear()
            self.subscriptions.clear()
            self.tokens.clear()
            self.calls.clear()
            self.throttled = 0
            self.max_calls_in_window = 0
            self._window.clear()

    # --- auth and limits ----------------------------------------------------------------------------

    def issue_token(self) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = self.clock() + self.token_lifetime
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "scope": "read write",
            "jti": str(uuid.uuid4()),
        }

    def token_state(self, token: str | None) -> str:
        """``valid``, ``expired`` or ``invalid``."""
        with self.lock:
            expires = self.tokens.get(token or "")
        if expires is None:
            return "invalid"
        return "valid" if self.clock() < expires else "expired"

    def count_call(self, endpoint: str) -> tuple[bool, int, float]:
        """Record one call: (allowed, remaining, seconds until the window frees a call)."""
        with self.lock:
            now = self.clock()
            while self._window and self._window[0] <= now - self.rate_window_seconds:
                self._window.popleft()
            if len(self._window) >= self.rate_limit:
                self.throttled += 1
                reset = self._window[0] + self.rate_window_seconds - now
                return False, 0, max(0.0, reset)
            self._window.append(now)
            self.calls[endpoint] += 1
            self.max_calls_in_window = max(self.max_calls_in_window, len(self._window))
            reset = self._window[0] + self.rate_window_seconds - now
            return True, self.rate_limit - len(self._window), max(0.0, reset)

    # --- webhooks -----------------------------------------------------------------------------------

    def webhook_bodies(
        self, transactions: list[str] | None = None, subscriber_codes: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The 2.0 webhooks Hotmart would have sent for the held sales (one per status change) and
        subscription cancellations, oldest first; ids are stable, so a second send is a resend."""
        bodies: list[dict[str, Any]] = []
        with self.lock:
            sales = [s for s in self.sales.values() if transactions is None or s.transaction in transactions]
            subs = [
                s
                for s in self.subscriptions.values()
                if (subscriber_codes is None and transactions is None)
                or (subscriber_codes is not None and s.subscriber_code in subscriber_codes)
            ]
            for sale in sales:
                for status, at in sale.history:
                    if status in WEBHOOK_OF_STATUS:
                        bodies.append(self._purchase_webhook(sale, status, at))
            for sub in subs:
                if sub.status.startswith("CANCELLED") and sub.end_accession_date:
                    bodies.append(_cancellation_webhook(sub))
        return sorted(bodies, key=lambda body: body["creation_date"])

    def _purchase_webhook(self, sale: Sale, status: str, at: int) -> dict[str, Any]:
        event, spelling = WEBHOOK_OF_STATUS[status]
        data: dict[str, Any] = {
            "product": {
                "id": sale.product_id,
                "ucode": _ucode(str(sale.product_id)),
                "name": sale.product_name,
            },
            "buyer": {"email": sale.buyer_email, "name": sale.buyer_name},
            "purchase": {
                "transaction": sale.transaction,
                "status": spelling,
                "order_date": sale.order_date,
                "approved_date": sale.approved_date,
                "price": {"value": sale.price, "currency_value": sale.currency},
                "full_price": {"value": sale.price, "currency_value": sale.currency},
                "offer": {"code": sale.offer_code},
                "payment": {"type": sale.payment_type, "installments_number": 1},
                "business_model": "I",
                "invoice_by": "HOTMART",
            },
        }
        sub = self.subscriptions.get(sale.subscriber_code or "")
        if sale.subscriber_code is not None:
            data["purchase"]["recurrence_number"] = sale.recurrency_number or 1
            if sub is not None:
                data["purchase"]["date_next_charge"] = sub.date_next_charge
            data["subscription"] = {
                "status": "ACTIVE" if sub is None else sub.status,
                "plan": {"id": sub.plan_id if sub else 1, "name": sub.plan_name if sub else "Monthly"},
                "subscriber": {"code": sale.subscriber_code},
            }
        return {
            "id": str(uuid.uuid5(_WEBHOOK_NAMESPACE, f"{sale.transaction}:{status}")),
            "creation_date": at,
            "event": event,
            "version": "2.0.0",
            "data": data,
        }


def _cancellation_webhook(sub: Subscription) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(_WEBHOOK_NAMESPACE, f"{sub.subscriber_code}:cancel:{sub.end_accession_date}")),
        "creation_date": sub.end_accession_date,
        "event": "SUBSCRIPTION_CANCELLATION",
        "version": "2.0.0",
        "data": {
            "date_next_charge": sub.date_next_charge,
            "cancellation_date": sub.end_accession_date,
            "actual_recurrence_value": sub.price,
            "product": {"id": sub.product_id, "name": sub.product_name},
            "subscriber": {"code": sub.subscriber_code, "name": sub.name, "email": sub.email},
            "subscription": {"id": sub.subscription_id, "plan": {"id": sub.plan_id, "name": sub.plan_name}},
        },
    }


def _ucode(seed: str) -> str:
    return str(uuid.uuid5(_WEBHOOK_NAMESPACE, "ucode:" + seed))
