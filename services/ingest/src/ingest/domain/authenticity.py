"""Is this webhook from Hotmart? The hottok is a static shared secret, so compare in constant time.

Several hottoks may be valid at once so an account's hottok can be rotated without dropping webhooks.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable


def is_authentic(presented: str | None, valid_hottoks: Iterable[str]) -> bool:
    if not presented:
        return False
    presented_bytes = presented.encode("utf-8")
    matched = False
    for hottok in valid_hottoks:
        # No early exit: every candidate is compared, so timing says nothing about which one matched.
        matched |= hmac.compare_digest(presented_bytes, hottok.encode("utf-8"))
    return matched
