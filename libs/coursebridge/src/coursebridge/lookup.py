"""Find a buyer's records by e-mail without keeping the e-mail in an index: a keyed hash.

Operators ask "what happened to ana@example.com?". Ingest and the subscription service answer from their
own documents, which carry ``email_key`` = HMAC-SHA256(key, normalised e-mail) — the same scheme in every
service, so one e-mail typed in the console finds the records of each. Without the key (``LOOKUP_HASH_KEY``
or ``LOOKUP_HASH_KEY_FILE``) the hash cannot be reversed or recomputed, not even by guessing addresses.

The key is process configuration like the secret registry of the logs: set once at bootstrap
(``configure``), read where documents are written. Without a key no ``email_key`` is written and e-mail
lookups answer that they are not configured.
"""

from __future__ import annotations

import hashlib
import hmac

from coursebridge.config import secret_env

LOOKUP_KEY_ENV = "LOOKUP_HASH_KEY"
_PREFIX = "ek1-"
_key: bytes | None = None


class LookupNotConfigured(RuntimeError):
    """E-mail lookups need ``LOOKUP_HASH_KEY``."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def email_key_with(key: bytes, email: str) -> str:
    digest = hmac.new(key, normalise_email(email).encode("utf-8"), hashlib.sha256).hexdigest()
    return _PREFIX + digest


def configure(key: str | bytes | None) -> None:
    """Use ``key`` for every ``email_key`` of this process (None: e-mails are not indexed)."""
    global _key
    _key = key.encode("utf-8") if isinstance(key, str) else key


def configure_from_env() -> bool:
    """Read ``LOOKUP_HASH_KEY`` (or ``_FILE``) when set (a key given by ``configure`` stays otherwise);
    True when a key is configured."""
    key = secret_env(LOOKUP_KEY_ENV)
    if key:
        configure(key)
    return _key is not None


def email_key(email: str | None) -> str | None:
    """The keyed hash of ``email``; None without an e-mail or without a key."""
    if not email or _key is None:
        return None
    return email_key_with(_key, email)


def required_email_key(email: str) -> str:
    """For a lookup: the hash, or ``LookupNotConfigured`` so the API can say why it cannot answer."""
    if _key is None:
        raise LookupNotConfigured(f"e-mail lookups need {LOOKUP_KEY_ENV} (the same in every service)")
    return email_key_with(_key, email)
