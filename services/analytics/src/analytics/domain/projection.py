"""Pure projection: one event in, the rows it adds to the warehouse out. No I/O.

The raw ``events`` row keeps the event's data minus personal data: e-mail addresses become a keyed hash
(``buyer_key``/``learner_key`` = HMAC-SHA256(key, lower(email)) in hex), names, documents, phones and
addresses are dropped. Fact rows take the analytical fields of the known event types; other types only get
their raw row. The projection is deterministic, so projecting the same event twice gives the same rows
and the dedupe on ``event_id`` makes it count once.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from coursebridge.events import Event

PAYMENT_PREFIX = "coursebridge.payment."
ENROLLMENT_PREFIX = "coursebridge.enrollment."
ACCESS_PREFIX = "coursebridge.subscription."
CATALOGUE_PREFIX = "coursebridge.catalogue."
LEARNING_PREFIX = "coursebridge.learning."

# Keys whose values are personal data and never reach the warehouse (at any depth of the payload).
_DROPPED_KEYS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "document",
        "document_type",
        "phone",
        "checkout_phone",
        "phone_local_code",
        "address",
        "zip_code",
        "ip",
        "ip_address",
    }
)
_EMAIL_KEYS = frozenset({"email", "buyer_email", "member_email", "learner_email"})

Row = dict[str, Any]
TABLE_NAMES = ("events", "payments", "enrollments", "subscriptions", "catalogue", "learning")


def pseudonym(key: bytes, email: str | None) -> str | None:
    if not email:
        return None
    return hmac.new(key, email.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()


def scrub(value: Any, key: bytes) -> Any:
    """A copy of ``value`` with personal fields dropped and e-mail addresses replaced by their pseudonym."""
    if isinstance(value, dict):
        clean: dict[str, Any] = {}
        for name, item in value.items():
            if name in _DROPPED_KEYS:
                continue
            if name in _EMAIL_KEYS:
                clean[name.replace("email", "key")] = pseudonym(key, item) if isinstance(item, str) else None
                continue
            clean[name] = scrub(item, key)
        return clean
    if isinstance(value, list):
        return [scrub(item, key) for item in value]
    if isinstance(value, str) and "@" in value and " " not in value and "." in value.rsplit("@", 1)[-1]:
        return pseudonym(key, value)  # an e-mail address under an unexpected key
    return value


def _ts(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _money(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal("0.000000001"))


def _get(mapping: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(name)
    return mapping


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass
class Projection:
    """The rows one or more events add, by table name."""

    rows: dict[str, list[Row]] = field(default_factory=lambda: {name: [] for name in TABLE_NAMES})

    def extend(self, other: Projection) -> None:
        for table, rows in other.rows.items():
            self.rows[table].extend(rows)

    def count(self) -> int:
        """How many events (raw rows) the projection holds."""
        return len(self.rows["events"])

    def is_empty(self) -> bool:
        return not any(self.rows.values())

    def deduplicated(self) -> Projection:
        """First row per event id in each table (a batch may carry one event twice).

        A learning event has one row per attributed purchase, told apart by ``purchase_index``.
        """
        result = Projection()
        for table, rows in self.rows.items():
            seen: set[tuple[str, Any]] = set()
            for row in rows:
                key = (row["event_id"], row.get("purchase_index"))
                if key not in seen:
                    seen.add(key)
                    result.rows[table].append(row)
        return result


def raw_row(event: Event, key: bytes, recorded_at: datetime | None = None) -> Row:
    return {
        "event_id": event.id,
        "type": event.type,
        "source": event.source,
        "time": event.time.astimezone(UTC),
        "subject": event.subject,
        "correlation_id": event.correlation_id,
        "payload": scrub(event.data, key),
        "recorded_at": recorded_at or datetime.now(UTC),
    }


def payment_row(event_id: str, event_type: str, data: dict[str, Any], key: bytes) -> Row | None:
    kind = data.get("kind") or event_type[len(PAYMENT_PREFIX) :].rsplit(".", 1)[0]
    if not str(kind).startswith("purchase_"):
        return None  # subscription-only and club events carry no money
    purchase = data.get("purchase") or {}
    price = purchase.get("price") or {}
    full_price = purchase.get("full_price") or {}
    producer = next(
        (c for c in data.get("commissions") or [] if isinstance(c, dict) and c.get("source") == "PRODUCER"),
        None,
    )
    subscription = data.get("subscription") or {}
    email = _get(data, "buyer", "email")
    return {
        "event_id": event_id,
        "kind": kind,
        "status": purchase.get("status"),
        "transaction": data.get("transaction"),
        "product_id": _str(_get(data, "product", "id")),
        "plan_id": _str(_get(subscription, "plan", "id")),
        "offer_code": purchase.get("offer_code"),
        "currency": price.get("currency"),
        "price": _money(price.get("value")),
        "producer_net": _money(producer.get("value")) if producer else None,
        # The commission's own currency: a producer may be paid in another currency than the buyer's.
        "producer_currency": (producer.get("currency") or price.get("currency")) if producer else None,
        "full_price": _money(full_price.get("value")),
        "full_price_currency": full_price.get("currency"),
        "recurrence_number": purchase.get("recurrence_number"),
        "is_subscription": purchase.get("is_subscription"),
        "subscriber_code": subscription.get("subscriber_code"),
        "buyer_key": pseudonym(key, email) if email else _get(data, "buyer", "key"),
        "occurred_at": _ts(data.get("occurred_at")),
    }


def project(event: Event, key: bytes, recorded_at: datetime | None = None) -> Projection:
    """The rows of one event: its raw row, plus a fact row when its type is one the views use."""
    out = Projection()
    out.rows["events"].append(raw_row(event, key, recorded_at))
    out.extend(project_facts(event.id, event.type, event.data, event.time, key))
    return out


def project_facts(
    event_id: str, event_type: str, data: dict[str, Any], time: datetime, key: bytes
) -> Projection:
    """Fact rows only (the rebuild replays these from the raw log, where e-mails are already hashed)."""
    out = Projection()
    if event_type.startswith(PAYMENT_PREFIX):
        row = payment_row(event_id, event_type, data, key)
        if row is not None:
            row["occurred_at"] = row["occurred_at"] or time
            out.rows["payments"].append(row)
    elif event_type.startswith(ENROLLMENT_PREFIX):
        out.rows["enrollments"].append(
            {
                "event_id": event_id,
                "kind": event_type[len(ENROLLMENT_PREFIX) :].rsplit(".", 1)[0],
                "entitlement_id": data.get("entitlement_id"),
                "course_id": _str(data.get("course_id")),
                "product_id": _str(data.get("product_id")),
                "transaction": data.get("transaction"),
                "access_id": data.get("access_id"),
                "learner_key": _key_of(data, key),
                "reason": data.get("reason"),
                "occurred_at": _ts(data.get("occurred_at")) or time,
            }
        )
    elif event_type.startswith(ACCESS_PREFIX):
        out.rows["subscriptions"].append(
            {
                "event_id": event_id,
                "kind": event_type[len(ACCESS_PREFIX) :].rsplit(".", 1)[0],
                "access_id": data.get("access_id"),
                "subscriber_code": data.get("subscriber_code"),
                "transaction": data.get("transaction"),
                "product_id": _str(data.get("product_id")),
                "plan_id": _str(data.get("plan_id")),
                "previous_plan_id": _str(data.get("previous_plan_id")),
                "state": data.get("state"),
                "reason": data.get("reason"),
                "buyer_key": _key_of(data, key),
                "paid_through": _ts(data.get("paid_through")),
                "effective_at": _ts(data.get("effective_at")) or time,
            }
        )
    elif event_type.startswith(CATALOGUE_PREFIX):
        out.rows["catalogue"].append(
            {
                "event_id": event_id,
                "kind": event_type[len(CATALOGUE_PREFIX) :].rsplit(".", 1)[0],
                "product_id": _str(data.get("product_id")),
                "revision": data.get("revision"),
                "course_count": len(data.get("course_ids") or []),
                "removed": data.get("removed"),
                "changed_at": _ts(data.get("changed_at")) or time,
            }
        )
    elif event_type.startswith(LEARNING_PREFIX):
        out.rows["learning"].extend(learning_rows(event_id, event_type, data, time))
    return out


def learning_rows(event_id: str, event_type: str, data: dict[str, Any], time: datetime) -> list[Row]:
    """One row per purchase the activity is attributed to (one row with no purchase when there is none).

    The views join these rows to payments by transaction; ``activity_id`` (the TalentLMS timeline
    entry) is their dedupe key, since a re-read or replay of the timeline publishes it again.
    """
    occurred = _ts(data.get("occurred_at")) or time
    common = {
        "event_id": event_id,
        "activity_id": _str(data.get("activity_id")) or event_id,
        "activity": data.get("activity") or event_type[len(LEARNING_PREFIX) :].rsplit(".", 1)[0],
        "lms_user_id": _str(data.get("lms_user_id")),
        "course_id": _str(data.get("course_id")),
        "occurred_at": occurred,
        "observed_at": _ts(data.get("observed_at")) or occurred,
    }
    purchases = [p for p in data.get("purchases") or [] if isinstance(p, dict)] or [{}]
    return [
        {
            **common,
            "purchase_index": index,
            "access_id": _str(purchase.get("access_id")),
            "transaction": _str(purchase.get("transaction")),
            "product_id": _str(purchase.get("product_id")),
        }
        for index, purchase in enumerate(purchases)
    ]


def _key_of(data: dict[str, Any], key: bytes) -> str | None:
    """The pseudonym of the data's e-mail; a scrubbed payload already carries it as ``key``."""
    if data.get("email"):
        return pseudonym(key, data["email"])
    return data.get("key")
