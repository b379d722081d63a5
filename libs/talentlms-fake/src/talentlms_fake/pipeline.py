"""The path every API call takes, v1 or v2: one budget, one set of injected failures, one auth switch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify

from talentlms_fake.state import RATE_LIMITED, SERVER_ERROR, ApiError, FakeState


def handle_call(
    state: FakeState,
    endpoint: str,
    *,
    authorized: Callable[[], bool],
    unauthorized: ApiError,
    not_found: ApiError | None,
    counted: bool,
    run: Callable[[], tuple[Any, int]],
    render: Callable[[ApiError], Response],
    rate_headers: Callable[[], dict[str, str]] | None = None,
    quota_headers: Callable[[], dict[str, str]] | None = None,
    precheck: Callable[[], None] | None = None,
) -> Response:
    """One API call, v1 or v2, in order: count by endpoint → injected failure (429 / 500) → auth (and the
    rejection switch) → unknown endpoint → API version (v2) → rate limit and quota (``counted``) → the
    action → ``X-RateLimit-*`` → injected after-effect (``acted_500``: a 500 although the action took
    effect; ``slow``: the answer held back).
    """
    state.count_call(endpoint)
    failure = state.take_failure(endpoint)
    if failure is not None and failure.mode == "429":
        retry = str(max(1, math.ceil(failure.seconds)))
        return render(ApiError(429, RATE_LIMITED, "rate_limit_error", {"Retry-After": retry}))
    if failure is not None and failure.mode == "500":
        return render(ApiError(500, SERVER_ERROR, "api_error"))

    if not authorized() or state.auth_rejected():
        state.count_rejection("unauthorized")
        return render(unauthorized)
    if not_found is not None:
        return render(not_found)
    state.settle_tasks()
    try:
        if precheck is not None:
            precheck()
        headers: dict[str, str] = {}
        if counted:
            headers = state.take_quota()
        elif rate_headers is not None:
            headers = rate_headers()
    except ApiError as exc:
        return render(exc)
    if quota_headers is not None:
        headers = quota_headers()
    try:
        body, status = run()
        response = jsonify(body) if status != 204 else Response(status=204)
        response.status_code = status
    except ApiError as exc:
        state.count_error(endpoint, exc.message)
        response = render(exc)
    response.headers.update(headers)
    if failure is not None and failure.mode == "acted_500":
        response = render(ApiError(500, SERVER_ERROR, "api_error"))
        response.headers.update(headers)
    if failure is not None and failure.mode == "slow":
        time.sleep(failure.seconds)
    return response
