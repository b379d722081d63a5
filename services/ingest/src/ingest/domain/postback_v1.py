"""Legacy Hotmart 1.0 postbacks -> the same normalised payment events as 2.0 webhooks (pure domain).

A Hotmart webhook configuration created for version 1.0 posts ``application/x-www-form-urlencoded`` flat
fields, every value a string, with the account's hottok in the body (no header), no event id, no event
name and no creation date. Refusing them (401) would make Hotmart deactivate the configuration, so they
are translated into the 2.0 body shape and normalised by the same code, with:

* the event name from the lowercase ``status`` (``approved`` -> PURCHASE_APPROVED, ...); a status with no
  2.0 event (``started``, ``wayting_payment``...) becomes ``POSTBACK_<STATUS>``, kind ``unrecognised``;
* a deterministic event id ``v1-<status>-<transaction>``, so a resent postback is a duplicate;
* the reception time as creation date (the postback has none);
* the hottok never copied: authenticity is checked by the caller, and only listed fields are read, so
  documents, phones and addresses never reach the event either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from ingest.domain.hotmart import NormalisedEvent, NotNormalisable, normalise

VERSION = "1.0"
MAX_FIELDS = 500

_EVENT_BY_STATUS: dict[str, str] = {
    "approved": "PURCHASE_APPROVED",
    "complete": "PURCHASE_COMPLETE",
    "completed": "PURCHASE_COMPLETE",
    "canceled": "PURCHASE_CANCELED",
    "cancelled": "PURCHASE_CANCELED",
    "refunded": "PURCHASE_REFUNDED",
    "chargeback": "PURCHASE_CHARGEBACK",
    "billet_printed": "PURCHASE_BILLET_PRINTED",
    "printed_billet": "PURCHASE_BILLET_PRINTED",
    "expired": "PURCHASE_EXPIRED",
    "delayed": "PURCHASE_DELAYED",
    "overdue": "PURCHASE_DELAYED",
    "dispute": "PURCHASE_PROTEST",
    "protested": "PURCHASE_PROTEST",
}
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def parse_form(raw_body: bytes) -> dict[str, str]:
    """Form fields, first value of each; raises ``NotNormalisable`` when the body is not a form."""
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        text = raw_body.decode("latin-1")  # older PHP senders; every byte maps to a character
    try:
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError as error:
        raise NotNormalisable(f"body is not a form: {error}") from error
    return {key: values[0] for key, values in parsed.items() if values}


def looks_like_form(raw_body: bytes, content_type: str | None) -> bool:
    """1.0 postbacks are forms; a body that starts like JSON is never treated as one."""
    if (content_type or "").split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
        return not raw_body.lstrip().startswith((b"{", b"["))
    return False


def postback_event_id(fields: Mapping[str, str]) -> str:
    status = _SAFE.sub("_", (fields.get("status") or "").strip().lower())[:40] or "none"
    transaction = _SAFE.sub("_", (fields.get("transaction") or "").strip())[:120] or "none"
    return f"v1-{status}-{transaction}"


def postback_body(fields: Mapping[str, str], received_at: datetime) -> dict[str, Any]:
    """The 2.0-shaped body equivalent of one 1.0 postback (what ``normalise`` reads, nothing more)."""
    status = (fields.get("status") or "").strip().lower()
    event = _EVENT_BY_STATUS.get(status) or ("POSTBACK_" + (_SAFE.sub("_", status).upper() or "UNKNOWN"))
    currency = _get(fields, "currency", "currency_code_from")
    purchase: dict[str, Any] = {
        "transaction": _get(fields, "transaction"),
        "status": status.upper() or None,
        "approved_date": _get(fields, "confirmation_purchase_date"),
        "order_date": _get(fields, "purchase_date"),
        "recurrence_number": _get(fields, "recurrency", "recurrency_number"),
        "price": {"value": _get(fields, "price"), "currency_value": currency},
        "full_price": {"value": _get(fields, "full_price"), "currency_value": currency},
        "offer": {"code": _get(fields, "off")},
        "payment": {
            "type": (_get(fields, "payment_type") or "").upper() or None,
            "installments_number": _get(fields, "installments_number"),
        },
    }
    data: dict[str, Any] = {
        "product": {"id": _get(fields, "prod"), "name": _get(fields, "prod_name")},
        "buyer": {
            "email": _get(fields, "email"),
            "name": _get(fields, "name"),
            "first_name": _get(fields, "first_name"),
            "last_name": _get(fields, "last_name"),
        },
        "purchase": purchase,
    }
    subscriber_code = _get(fields, "subscriber_code")
    if subscriber_code:
        data["subscription"] = {
            "status": _get(fields, "subscription_status", "signature_status"),
            "plan": {"name": _get(fields, "name_subscription_plan")},
            "subscriber": {"code": subscriber_code},
        }
    return {
        "id": postback_event_id(fields),
        "event": event,
        "version": VERSION,
        "creation_date": int(received_at.timestamp() * 1000),
        "data": data,
    }


def normalise_postback(fields: Mapping[str, str], received_at: datetime) -> NormalisedEvent:
    """Normalise one 1.0 postback; ``NotNormalisable`` as for 2.0 bodies (e.g. no transaction)."""
    if not (fields.get("transaction") or "").strip():
        raise NotNormalisable("legacy 1.0 postback without a transaction")
    return normalise(postback_body(fields, received_at), received_at=received_at, source="webhook_v1")


def _get(fields: Mapping[str, str], *keys: str) -> str | None:
    for key in keys:
        value = fields.get(key)
        if value is not None and value.strip():
            return value.strip()
    return None
