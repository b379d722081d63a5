"""What an operator may see of a stored body: its shape and business fields, never the buyer's data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MASK = "[personal]"
_PERSONAL_PARTS = ("email", "phone", "document", "address", "cpf", "cnpj", "zip", "cell", "hottok", "doc")
_PERSONAL_NAMES = frozenset(
    {"name", "first_name", "last_name", "aff_name", "producer_name", "trade_name", "buyer_ip", "ip", "sck"}
)
_BUSINESS_PARENTS = frozenset({"product", "plan", "offer", "plans", "checkout_country", "payment"})


def mask_personal(value: Any, parent: str | None = None) -> Any:
    """A copy of ``value`` with personal fields (by key) replaced by ``[personal]``."""
    if isinstance(value, Mapping):
        return {str(k): _masked(str(k), v, parent) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_personal(item, parent) for item in value]
    return value


def _masked(key: str, value: Any, parent: str | None) -> Any:
    lowered = key.lower()
    personal = any(part in lowered for part in _PERSONAL_PARTS) or (
        lowered in _PERSONAL_NAMES and parent not in _BUSINESS_PARENTS
    )
    if personal and value not in (None, ""):
        return MASK
    return mask_personal(value, lowered)
