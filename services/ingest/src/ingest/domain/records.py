"""How an accepted webhook is kept: ids, redaction and compact raw bodies. Pure functions, no I/O."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
import zlib
from collections.abc import Mapping

# Stable namespace so a resent webhook (same Hotmart id) always becomes the same CloudEvent id.
_EVENT_ID_NAMESPACE = uuid.UUID("6f1c7a52-2f0e-4a4b-9a8e-3c5d2b7e9f10")
_SAFE_DOC_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_BODY_HOTTOK = re.compile(rb'("hottok"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_FORM_HOTTOK = re.compile(rb"(^|&)(hottok=)[^&]*", re.IGNORECASE)

# Firestore documents are capped at 1 MiB; keep the raw body well under that with room for metadata.
MAX_STORED_RAW_CHARS = 900_000


def document_id(hotmart_event_id: str) -> str:
    """Hotmart ids are UUIDs and make readable document ids; anything else is hashed to stay valid."""
    if (
        _SAFE_DOC_ID.match(hotmart_event_id)
        and not hotmart_event_id.startswith("__")
        and hotmart_event_id[0] != "."
    ):
        return hotmart_event_id
    return "sha256-" + hashlib.sha256(hotmart_event_id.encode("utf-8")).hexdigest()


def cloud_event_id(hotmart_event_id: str) -> str:
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, "hotmart:" + hotmart_event_id))


def quarantine_id(raw_body: bytes) -> str:
    """The same bad body sent twice is quarantined once."""
    return "sha256-" + hashlib.sha256(raw_body).hexdigest()


def redact_hottok(raw_body: bytes) -> bytes:
    """Older payloads carry the hottok in the body too; it is a credential and is not kept."""
    return _BODY_HOTTOK.sub(rb'\1"[redacted]"', raw_body)


def redact_form_hottok(raw_body: bytes) -> bytes:
    """Legacy 1.0 postbacks carry the hottok as a form field: keep the field, not the secret."""
    return _FORM_HOTTOK.sub(rb"\1\2%5Bredacted%5D", raw_body)


def body_fingerprint(body: object) -> str:
    """Hash of a parsed body's content (key order and spacing ignored, any ``hottok`` left out): the same
    event id with another fingerprint is a conflict, not a duplicate."""
    if isinstance(body, Mapping):
        body = {k: v for k, v in body.items() if str(k).lower() != "hottok"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "replace")).hexdigest()


def pack_raw(raw_body: bytes) -> str | None:
    """zlib (fast level) + base64: Hotmart bodies still shrink ~3x. None when it would not fit anyway."""
    packed = base64.b64encode(zlib.compress(raw_body, 1)).decode("ascii")
    return packed if len(packed) <= MAX_STORED_RAW_CHARS else None


def unpack_raw(packed: str) -> bytes:
    return zlib.decompress(base64.b64decode(packed))


def _dig(value: object, *path: str) -> object:
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _text(value: object) -> str | None:
    return str(value)[:256] if isinstance(value, str | int) and str(value).strip() else None


def lookup_fields(data: Mapping) -> tuple[str | None, str | None, str | None]:
    """(transaction, subscriber code, e-mail) of a normalised event: what operators search a webhook by."""
    email = _dig(data, "buyer", "email") or _dig(data, "member", "email")
    return (
        _text(data.get("transaction")),
        _text(_dig(data, "subscription", "subscriber_code")),
        email if isinstance(email, str) else None,
    )


def raw_lookup_fields(body: object) -> tuple[str | None, str | None, str | None]:
    """The same, best effort, from a body that could not be normalised (2.0 JSON or a 1.0 form)."""
    if not isinstance(body, Mapping):
        return None, None, None
    if "data" not in body:  # 1.0 postback fields
        return _text(body.get("transaction")), _text(body.get("subscriber_code")), _text(body.get("email"))
    data = body.get("data")
    transaction = _dig(data, "purchase", "transaction") or _dig(data, "transaction")
    code = _dig(data, "subscription", "subscriber", "code") or _dig(data, "subscriber", "code")
    email = _dig(data, "buyer", "email") or _dig(data, "subscriber", "email") or _dig(data, "user", "email")
    return _text(transaction), _text(code), _text(email)
