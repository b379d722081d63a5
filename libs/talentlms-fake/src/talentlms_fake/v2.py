"""TalentLMS API v2 under ``/api/v2/``: JSON, ``X-API-Key``, ``_data`` wrappers, page-number paging, batches.

What the real v2 does is in ``shared/reference/talentlms-api-v2.md``; the README lists every point where
the fake had to choose because the source is silent (task shape, "already enrolled" in a batch, which
window ``X-RateLimit-*`` describe, error wording). v1 and v2 share one state, one budget and one set of
injected failures (``talentlms_fake.pipeline``).
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, request

from talentlms_fake.pipeline import handle_call
from talentlms_fake.state import (
    BATCH_MAX_ITEMS,
    INVALID_ARGUMENTS,
    V2_BAD_FILTER,
    V2_BAD_VERSION,
    V2_NOT_FOUND,
    V2_PAGE_SIZE,
    V2_UNAUTHORIZED,
    ApiError,
    FakeState,
)

V2_PREFIX = "/api/v2"
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = BATCH_MAX_ITEMS
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MALFORMED_BODY = "The request body must be a JSON object"

Handler = Callable[..., tuple[Any, int]]


def register_v2(
    app: Flask, state: FakeState, api_key: str, versions: frozenset[str] | None, error_style: str
) -> None:
    """Add the v2 routes to ``app``."""

    def render(exc: ApiError) -> Response:
        error_type = "api_error" if exc.status >= 500 else "invalid_request_error"
        pair = {"type": error_type, "message": exc.message}
        response = jsonify(pair if error_style == "top" else {"error": pair})
        response.status_code = exc.status
        response.headers.update(exc.headers)
        return response

    def authorized() -> bool:
        sent = request.headers.get("X-API-Key", "")
        return bool(sent) and hmac.compare_digest(sent.encode(), api_key.encode())

    def check_version() -> None:
        version = request.headers.get("X-API-Version", "")
        if not _VERSION.match(version) or (versions is not None and version not in versions):
            raise ApiError(400, V2_BAD_VERSION)

    def call(endpoint: str, handler: Handler | None, **kwargs: Any) -> Response:
        return handle_call(
            state,
            endpoint,
            authorized=authorized,
            unauthorized=ApiError(401, V2_UNAUTHORIZED),
            not_found=None if handler is not None else ApiError(404, V2_NOT_FOUND),
            counted=True,
            run=(lambda: handler(**kwargs)) if handler is not None else _never,
            render=render,
            quota_headers=state.quota_headers,
            precheck=check_version,
        )

    @app.get(f"{V2_PREFIX}/health")
    def health() -> Response:
        """No auth, not counted [OAS healthCheck]."""
        return jsonify({"_data": {"status": "ok"}})

    @app.get(f"{V2_PREFIX}/users")
    def list_users() -> Response:
        return call("GET /v2/users", _list_users)

    def _list_users() -> tuple[Any, int]:
        number, size = _paging()
        email = request.args.get("filter[email][eq]")
        since = _iso_filter("filter[last_updated][gte]")
        until = _iso_filter("filter[last_updated][lte]")
        users = state.search_users(email=email, updated_since=since)
        if until is not None:
            users = [u for u in users if _parse_iso(u["last_updated"]) <= until]
        return _page(users, number, size), 200

    @app.post(f"{V2_PREFIX}/users")
    def create_user() -> Response:
        return call("POST /v2/users", _create_user)

    def _create_user() -> tuple[Any, int]:
        body = _json_body()
        fields = {k: str(body.get(k) or "") for k in ("name", "surname", "login", "email", "password")}
        user = state.add_user(
            email=fields["email"],
            login=fields["login"],
            first_name=fields["name"],
            last_name=fields["surname"],
            password=fields["password"],
        )
        return {"_data": state.get_user(user["id"])}, 201

    @app.route(f"{V2_PREFIX}/users/<user_id>", methods=["GET", "DELETE"])
    def one_user(user_id: str) -> Response:
        if request.method == "DELETE":
            return call("DELETE /v2/users/{id}", lambda: ({"_data": state.delete_user(user_id)}, 200))
        return call("GET /v2/users/{id}", lambda: ({"_data": state.get_user(user_id)}, 200))

    @app.get(f"{V2_PREFIX}/users/<user_id>/courses")
    def user_courses(user_id: str) -> Response:
        return call(
            "GET /v2/users/{id}/courses",
            lambda: ({"_data": {"courses": state.user_courses(user_id)}}, 200),
        )

    @app.route(f"{V2_PREFIX}/enrollments", methods=["POST", "DELETE"])
    def enrollments() -> Response:
        if request.method == "DELETE":
            return call("DELETE /v2/enrollments", _unenroll)
        return call("POST /v2/enrollments", _enroll)

    def _pair() -> tuple[str, str]:
        body = request.get_json(silent=True)
        source = body if isinstance(body, dict) else request.args
        user_id, course_id = str(source.get("user_id", "")), str(source.get("course_id", ""))
        if not user_id or not course_id:
            raise ApiError(400, INVALID_ARGUMENTS)
        return user_id, course_id

    def _enroll() -> tuple[Any, int]:
        user_id, course_id = _pair()
        state.enroll(user_id, course_id, "learner")
        return {"_data": {"user_id": int(user_id), "course_id": int(course_id), "role": "learner"}}, 201

    def _unenroll() -> tuple[Any, int]:
        user_id, course_id = _pair()
        state.unenroll(user_id, course_id)
        return {"_data": {"user_id": int(user_id), "course_id": int(course_id)}}, 200

    @app.post(f"{V2_PREFIX}/batch/<kind>")
    def batch(kind: str) -> Response:
        if kind not in ("users", "enrollments"):
            return call(f"POST /v2/batch/{kind}", None)
        return call(f"POST /v2/batch/{kind}", _batch, kind=kind)

    def _batch(kind: str) -> tuple[Any, int]:
        items = _json_body().get(kind)
        if not isinstance(items, list):
            raise ApiError(422, f'The body needs a list "{kind}"')
        task = state.create_task(kind, items)
        return {"_data": {"task_id": task.id, "status": "pending", "total_items": len(items)}}, 202

    @app.get(f"{V2_PREFIX}/tasks/<task_id>")
    def task(task_id: str) -> Response:
        return call("GET /v2/tasks/{id}", lambda: ({"_data": state.task_view(task_id)}, 200))

    @app.get(f"{V2_PREFIX}/courses/<course_id>/users/<user_id>/goto")
    def goto(course_id: str, user_id: str) -> Response:
        return call(
            "GET /v2/courses/{id}/users/{id}/goto",
            lambda: ({"_data": {"goto_url": state.goto_url(request.host_url, user_id, course_id)}}, 200),
        )

    @app.route(f"{V2_PREFIX}/", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.route(f"{V2_PREFIX}/<path:_rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown(_rest: str = "") -> Response:
        return call("(unknown v2)", None)


def _never() -> tuple[Any, int]:  # pragma: no cover - the pipeline answers 404 before running it
    raise ApiError(404, V2_NOT_FOUND)


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(422, _MALFORMED_BODY)
    return body


def _paging() -> tuple[int, int]:
    try:
        number = int(request.args.get("page[number]", "1"))
        size = int(request.args.get("page[size]", str(DEFAULT_PAGE_SIZE)))
    except ValueError:
        raise ApiError(400, V2_PAGE_SIZE) from None
    if number < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        raise ApiError(400, V2_PAGE_SIZE)
    return number, size


def _parse_iso(value: str) -> float:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _iso_filter(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return _parse_iso(raw)
    except ValueError:
        raise ApiError(400, V2_BAD_FILTER) from None


def _page(items: list[dict[str, Any]], number: int, size: int) -> dict[str, Any]:
    total = len(items)
    pages = max(1, math.ceil(total / size))
    chunk = items[(number - 1) * size : number * size]

    def link(page: int | None) -> str | None:
        if page is None:
            return None
        args = {k: v for k, v in request.args.items() if not k.startswith("page[")}
        args.update({"page[number]": str(page), "page[size]": str(size)})
        return f"{request.base_url}?{urlencode(args)}"

    return {
        "_data": chunk,
        "_links": {
            "self": link(number),
            "first": link(1),
            "last": link(pages),
            "prev": link(number - 1) if number > 1 else None,
            "next": link(number + 1) if number < pages else None,
        },
        "_meta": {
            "pagination": {
                "page": number,
                "page_size": size,
                "total_items": len(chunk),
                "total_pages": pages,
                "total_results": total,
            }
        },
    }
