"""Stable document ids and e-mail handling. Ids never contain personal data (they are hashes)."""

from __future__ import annotations

import hashlib
import re

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$"
)
_PRODUCT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def is_valid_email(email: str) -> bool:
    return len(email) <= 320 and _EMAIL.fullmatch(email.strip()) is not None


def is_valid_product_id(product_id: str) -> bool:
    return _PRODUCT_ID.fullmatch(product_id) is not None


def _digest(*parts: str, length: int = 20) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:length]


def entitlement_id(email: str, course_id: str) -> str:
    """Student x course, e.g. ``ent-3f2a9c0d1e...``; the same for any spelling of the e-mail's case."""
    return "ent-" + _digest(normalise_email(email), course_id)


def access_doc_id(access_id: str) -> str:
    """Document id of an access source (``sub:<code>:<product>`` or ``tx:<transaction>``)."""
    return "acc-" + _digest(access_id, length=24)


def student_doc_id(email: str) -> str:
    return "stu-" + _digest(normalise_email(email), length=24)


def access_id_for(transaction: str | None, subscriber_code: str | None, product_id: str | None) -> str | None:
    """``sub:<subscriber code>:<product id>`` when the payment has a subscriber code, else ``tx:<tx>``."""
    if subscriber_code and product_id:
        return f"sub:{subscriber_code}:{product_id}"
    if transaction:
        return f"tx:{transaction}"
    return None
