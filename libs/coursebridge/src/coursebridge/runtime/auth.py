"""Bearer-token check for the operator APIs (admin, student, sweep, revenue, webhook status)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import jsonify, request


def bearer_token_matches(expected: str | None) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8"), expected.encode("utf-8"))


def require_bearer(token: str | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a view so it answers 401 unless ``Authorization: Bearer <token>`` matches."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not bearer_token_matches(token):
                response = jsonify(error="unauthorized", message="missing or wrong bearer token")
                response.headers["WWW-Authenticate"] = 'Bearer realm="coursebridge"'
                return response, 401
            return view(*args, **kwargs)

        return guarded

    return decorate
