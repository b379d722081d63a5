"""The Flask app: TalentLMS v1 paths under ``/api/v1/`` and test controls under ``/_fake/``.

Request handling, in order: count the call by action → injected failure (429 / 500) → HTTP Basic auth
(API key as the user name) → unknown action → rate limit (``ratelimit`` itself is not counted) → the
action → ``X-RateLimit-*`` headers → injected slowness (the action has already taken effect; only the
answer is late, which is what makes a client's retry meet "already enrolled").
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask, Response, jsonify, request

from talentlms_fake.state import (
    INVALID_ARGUMENTS,
    RATE_LIMITED,
    SERVER_ERROR,
    UNAUTHORIZED,
    UNKNOWN_ACTION,
    ApiError,
    FakeState,
)

API_PREFIX = "/api/v1"
STATE_EXTENSION = "talentlms_fake"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Args = dict[str, str]


def create_app(
    api_key: str,
    *,
    courses: list[dict] | None = None,
    rate_limit: int = 200,
    rate_window_seconds: float = 5.0,
    hourly_quota: int | None = None,
) -> Flask:
    """A fake TalentLMS portal. ``courses=None`` seeds ``DEMO_COURSES``; ``[]`` starts with none.

    The state is ``app.extensions["talentlms_fake"]`` (a ``FakeState``).
    """
    if not api_key:
        raise ValueError("the fake needs an API key")
    state = FakeState(
        courses, rate_limit=rate_limit, rate_window_seconds=rate_window_seconds, hourly_quota=hourly_quota
    )
    app = Flask("talentlms_fake")
    app.json.sort_keys = False
    app.extensions[STATE_EXTENSION] = state
    actions = _actions(state)

    @app.route(f"{API_PREFIX}/", methods=["GET", "POST"])
    @app.route(f"{API_PREFIX}/<path:_rest>", methods=["GET", "POST"])
    def api(_rest: str = "") -> Response:
        action, arg_segment = _split_raw_path()
        known = action in actions
        state.count_call(action if known else "(unknown)")

        failure = state.take_failure()
        if failure is not None and failure.mode == "429":
            retry = str(max(1, math.ceil(failure.seconds)))
            return _error(ApiError(429, RATE_LIMITED, "rate_limit_error", {"Retry-After": retry}))
        if failure is not None and failure.mode == "500":
            return _error(ApiError(500, SERVER_ERROR, "api_error"))

        if not _authorized(api_key):
            state.count_rejection("unauthorized")
            return _error(
                ApiError(401, UNAUTHORIZED, "authentication_error", {"WWW-Authenticate": 'Basic realm="API"'})
            )
        if not known:
            return _error(ApiError(404, UNKNOWN_ACTION))

        method, handler = actions[action]
        try:
            headers = state.rate_limit_headers() if action == "ratelimit" else state.take_quota()
        except ApiError as exc:
            return _error(exc)
        try:
            if request.method != method:
                raise ApiError(400, INVALID_ARGUMENTS)
            args = _parse_args(arg_segment)
            if method == "POST":
                if args or request.mimetype not in _FORM_TYPES:
                    raise ApiError(400, INVALID_ARGUMENTS)
                body = handler({k: v for k, v in request.form.items()})
            else:
                body = handler(args)
            response = jsonify(body)
        except ApiError as exc:
            state.count_error(action, exc.message)
            response = _error(exc)
        response.headers.update(headers)
        if failure is not None and failure.mode == "slow":
            time.sleep(failure.seconds)
        return response

    @app.before_request
    def _loopback_only_controls() -> Response | None:
        if request.path.startswith("/_fake/") and request.remote_addr not in _LOOPBACK:
            return _control_error("test controls answer on loopback only", 403)
        return None

    @app.post("/_fake/failures")
    def set_failure() -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _control_error('expected JSON {"mode": "none|429|500|slow", "seconds": N, "count": N}')
        try:
            failure = state.set_failure(
                str(body.get("mode", "")),
                None if body.get("seconds") is None else float(body["seconds"]),
                None if body.get("count") is None else int(body["count"]),
            )
        except (TypeError, ValueError) as exc:
            return _control_error(str(exc))
        return jsonify(failure.as_dict())

    @app.get("/_fake/state")
    def get_state() -> Response:
        return jsonify(state.snapshot())

    @app.post("/_fake/reset")
    def reset() -> Response:
        state.reset()
        return jsonify(state.snapshot())

    @app.post("/_fake/courses")
    def add_courses() -> Response:
        body = request.get_json(silent=True)
        courses = body.get("courses") if isinstance(body, dict) and "courses" in body else body
        if isinstance(courses, dict):
            courses = [courses]
        if not isinstance(courses, list) or not all(isinstance(c, dict) for c in courses):
            return _control_error('expected JSON {"courses": [{"id": "7", "name": "..."}]}')
        try:
            added = state.add_courses(courses)
        except ValueError as exc:
            return _control_error(str(exc))
        return jsonify([{"id": c["id"], "name": c["name"]} for c in added])

    @app.post("/_fake/users")
    def add_users() -> Response:
        """Seed users without going through the API (not counted, not rate limited)."""
        body = request.get_json(silent=True)
        users = body.get("users") if isinstance(body, dict) and "users" in body else body
        if isinstance(users, dict):
            users = [users]
        if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
            return _control_error('expected JSON {"users": [{"email", "login", "first_name", "last_name"}]}')
        created = []
        for user in users:
            try:
                created.append(
                    state.add_user(
                        email=str(user.get("email", "")),
                        login=str(user.get("login", "")),
                        first_name=str(user.get("first_name", "")),
                        last_name=str(user.get("last_name", "")),
                        password=str(user.get("password", "Fake-password-1")),
                    )
                )
            except ApiError as exc:
                return _control_error(exc.message)
        return jsonify([{"id": u["id"], "login": u["login"]} for u in created])

    return app


def _actions(state: FakeState) -> dict[str, tuple[str, Callable[[Args], Any]]]:
    def users(args: Args) -> Any:
        if not args:
            return state.list_users()
        if len(args) != 1:
            raise ApiError(400, INVALID_ARGUMENTS)
        ((key, value),) = args.items()
        return state.find_user(key, value)

    def usersignup(form: Args) -> Any:
        return state.add_user(
            email=form.get("email", ""),
            login=form.get("login", ""),
            first_name=form.get("first_name", ""),
            last_name=form.get("last_name", ""),
            password=form.get("password", ""),
        )

    def addusertocourse(form: Args) -> Any:
        if not form.get("user_id") or not form.get("course_id"):
            raise ApiError(400, INVALID_ARGUMENTS)
        return state.enroll(form["user_id"].strip(), form["course_id"].strip(), form.get("role") or "learner")

    def removeuserfromcourse(args: Args) -> Any:
        if set(args) != {"user_id", "course_id"}:
            raise ApiError(400, INVALID_ARGUMENTS)
        return state.unenroll(args["user_id"], args["course_id"])

    def usersetstatus(args: Args) -> Any:
        if set(args) != {"user_id", "status"}:
            raise ApiError(400, INVALID_ARGUMENTS)
        return state.set_user_status(args["user_id"], args["status"])

    def courses(args: Args) -> Any:
        if not args:
            return state.list_courses()
        if set(args) != {"id"}:
            raise ApiError(400, INVALID_ARGUMENTS)
        return state.get_course(args["id"])

    def ratelimit(args: Args) -> Any:
        if args:
            raise ApiError(400, INVALID_ARGUMENTS)
        return state.rate_limit_status()

    return {
        "users": ("GET", users),
        "usersignup": ("POST", usersignup),
        "addusertocourse": ("POST", addusertocourse),
        "removeuserfromcourse": ("GET", removeuserfromcourse),
        "usersetstatus": ("GET", usersetstatus),
        "courses": ("GET", courses),
        "ratelimit": ("GET", ratelimit),
    }


def _split_raw_path() -> tuple[str, str]:
    """``(action, raw argument segment)`` from the undecoded request path.

    The raw path matters: a value may carry an encoded ``,`` or ``:`` (``%2C``, ``%3A``) that must not split
    it. ``+`` stays a plus sign (path, not query string): ``users/email:ana%2Btag%40example.com``.
    """
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
    path = urlsplit(raw).path if "://" in raw else raw.split("?", 1)[0]
    rest = path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path
    segments = [s for s in rest.strip("/").split("/")]
    action = unquote(segments[0]).lower() if segments else ""
    if len(segments) > 2:
        return action, "\x00"  # more than one argument segment: rejected by _parse_args
    return action, segments[1] if len(segments) == 2 else ""


def _parse_args(segment: str) -> Args:
    """``key:value,key:value`` with URL-encoded values; anything else is "Invalid arguments provided"."""
    args: Args = {}
    if not segment:
        return args
    for part in segment.split(","):
        key, sep, value = part.partition(":")
        key = unquote(key).strip().lower()
        value = unquote(value)
        if not sep or not key or not value or key in args:
            raise ApiError(400, INVALID_ARGUMENTS)
        args[key] = value
    return args


def _authorized(api_key: str) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic" or auth.username is None:
        return False
    return hmac.compare_digest(auth.username.encode(), api_key.encode())


def _error(exc: ApiError) -> Response:
    response = jsonify(exc.body())
    response.status_code = exc.status
    response.headers.update(exc.headers)
    return response


def _control_error(message: str, status: int = 400) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response
