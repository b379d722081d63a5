"""The Flask app: TalentLMS v1 paths under ``/api/v1/``, v2 under ``/api/v2/`` (``talentlms_fake.v2``) and
test controls under ``/_fake/``.

Every API call, v1 or v2, goes through ``_pipeline``: count the call by endpoint → injected failure
(429 / 500, nothing happens) → auth (v1: HTTP Basic with the key as user name; v2: ``X-API-Key``; both
refused while the rejection switch is on) → unknown endpoint → v2's ``X-API-Version`` → ONE shared budget
(the short window and the hourly quota; v1 ``ratelimit`` is not counted) → the action → ``X-RateLimit-*``
headers → injected after-effects: ``acted_500`` (the action took effect, the answer is a 500) or ``slow``
(the action took effect, the answer is late), which is what makes a client's retry meet "already
enrolled".
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask, Response, jsonify, request

from talentlms_fake.pipeline import handle_call
from talentlms_fake.state import (
    INVALID_ARGUMENTS,
    UNAUTHORIZED,
    UNKNOWN_ACTION,
    ApiError,
    FakeState,
)
from talentlms_fake.v2 import register_v2

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
    quota_window_seconds: float = 3600.0,
    task_delay_seconds: float = 0.2,
    api_versions: Iterable[str] | None = None,
    v2_error_style: str = "top",
) -> Flask:
    """A fake TalentLMS portal. ``courses=None`` seeds ``DEMO_COURSES``; ``[]`` starts with none.

    ``hourly_quota`` per ``quota_window_seconds`` (shorten the window for compressed-hour benchmarks) is
    shared by v1 and v2 with the ``rate_limit`` per ``rate_window_seconds``. ``api_versions``: the
    ``X-API-Version`` values v2 accepts (None: any ``YYYY-MM-DD``). ``v2_error_style``: ``"top"`` puts
    ``type``/``message`` at the top of v2 error bodies, ``"nested"`` under ``error`` (both are plausible).
    The state is ``app.extensions["talentlms_fake"]`` (a ``FakeState``).
    """
    if not api_key:
        raise ValueError("the fake needs an API key")
    if v2_error_style not in ("top", "nested"):
        raise ValueError("v2_error_style must be 'top' or 'nested'")
    state = FakeState(
        courses,
        rate_limit=rate_limit,
        rate_window_seconds=rate_window_seconds,
        hourly_quota=hourly_quota,
        quota_window_seconds=quota_window_seconds,
        task_delay_seconds=task_delay_seconds,
    )
    app = Flask("talentlms_fake")
    app.json.sort_keys = False
    app.extensions[STATE_EXTENSION] = state
    actions = _actions(state)
    versions = None if api_versions is None else frozenset(api_versions)

    @app.route(f"{API_PREFIX}/", methods=["GET", "POST"])
    @app.route(f"{API_PREFIX}/<path:_rest>", methods=["GET", "POST"])
    def api(_rest: str = "") -> Response:
        action, arg_segment = _split_raw_path()
        known = action in actions
        endpoint = action if known else "(unknown)"

        def authorized() -> bool:
            return _authorized(api_key)

        def run() -> tuple[Any, int]:
            method, handler = actions[action]
            if request.method != method:
                raise ApiError(400, INVALID_ARGUMENTS)
            args = _parse_args(arg_segment)
            if method == "POST":
                if args or request.mimetype not in _FORM_TYPES:
                    raise ApiError(400, INVALID_ARGUMENTS)
                return handler({k: v for k, v in request.form.items()}), 200
            return handler(args), 200

        return handle_call(
            state,
            endpoint,
            authorized=authorized,
            unauthorized=ApiError(
                401, UNAUTHORIZED, "authentication_error", {"WWW-Authenticate": 'Basic realm="API"'}
            ),
            not_found=None if known else ApiError(404, UNKNOWN_ACTION),
            counted=action != "ratelimit",
            run=run,
            render=_error,
            rate_headers=state.rate_limit_headers if action == "ratelimit" else None,
        )

    register_v2(app, state, api_key, versions, v2_error_style)

    @app.before_request
    def _loopback_only_controls() -> Response | None:
        if request.path.startswith("/_fake/") and request.remote_addr not in _LOOPBACK:
            return _control_error("test controls answer on loopback only", 403)
        return None

    @app.post("/_fake/failures")
    def set_failure() -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _control_error(
                'expected JSON {"mode": "none|429|500|acted_500|slow", "seconds": N, "count": N,'
                ' "endpoint": "addusertocourse"}'
            )
        try:
            failure = state.set_failure(
                str(body.get("mode", "")),
                None if body.get("seconds") is None else float(body["seconds"]),
                None if body.get("count") is None else int(body["count"]),
                None if body.get("endpoint") is None else str(body["endpoint"]),
            )
        except (TypeError, ValueError) as exc:
            return _control_error(str(exc))
        return jsonify(failure.as_dict())

    @app.post("/_fake/auth")
    def reject_auth() -> Response:
        body = request.get_json(silent=True)
        try:
            seconds = float(body["reject_seconds"]) if isinstance(body, dict) else math.nan
        except (KeyError, TypeError, ValueError):
            seconds = math.nan
        if not seconds >= 0:
            return _control_error('expected JSON {"reject_seconds": N} (0 accepts the key again)')
        state.reject_auth_for(seconds)
        return jsonify({"reject_seconds": seconds})

    @app.post("/_fake/tasks")
    def configure_tasks() -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _control_error('expected JSON {"delay_seconds": N, "fail_next": N}')
        try:
            state.configure_tasks(
                delay_seconds=None if body.get("delay_seconds") is None else float(body["delay_seconds"]),
                fail_next=None if body.get("fail_next") is None else int(body["fail_next"]),
            )
        except (TypeError, ValueError) as exc:
            return _control_error(str(exc))
        return jsonify({"delay_seconds": state.task_delay_seconds, "fail_next": state.fail_next_tasks})

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

    @app.delete("/_fake/courses/<course_id>")
    def remove_course(course_id: str) -> Response:
        """The course deleted on the portal (its enrollments go with it)."""
        try:
            state.remove_course(course_id)
        except ApiError as exc:
            return _control_error(exc.message, 404)
        return jsonify({"id": course_id, "deleted": True})

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

    @app.delete("/_fake/users/<user_id>")
    def delete_user(user_id: str) -> Response:
        """As an admin would in the portal (not counted)."""
        try:
            state.delete_user(user_id)
        except ApiError as exc:
            return _control_error(exc.message, 404)
        return jsonify({"id": user_id, "deleted": True})

    @app.post("/_fake/enrollments")
    def enroll_by_hand() -> Response:
        """An admin enrolls someone by hand (a course CourseBridge never granted); not counted."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("user_id") or not body.get("course_id"):
            return _control_error('expected JSON {"user_id": "1", "course_id": "7"}')
        try:
            state.enroll(str(body["user_id"]), str(body["course_id"]), str(body.get("role") or "learner"))
        except ApiError as exc:
            return _control_error(exc.message)
        return jsonify({"user_id": str(body["user_id"]), "course_id": str(body["course_id"])})

    @app.post("/_fake/logins")
    def sign_in() -> Response:
        """A user signs in to the portal (timeline ``user_login_user``), now or ``at`` (epoch seconds)."""
        return _learner_event(state, "user_login_user", course=False)

    @app.post("/_fake/completions")
    def complete() -> Response:
        """A user completes a course they are enrolled in (timeline ``course_completion``)."""
        return _learner_event(state, "course_completion", course=True)

    return app


def _learner_event(state: FakeState, event_type: str, *, course: bool) -> Response:
    body = request.get_json(silent=True)
    course_part = ', "course_id": "7"' if course else ""
    usage = '{"user_id": "1"' + course_part + ', "at": <epoch seconds, optional>}'
    if not isinstance(body, dict) or not body.get("user_id") or (course and not body.get("course_id")):
        return _control_error(f"expected JSON {usage}")
    try:
        at = None if body.get("at") is None else float(body["at"])
        event = state.record_event(
            event_type, str(body["user_id"]), str(body["course_id"]) if course else None, at
        )
    except (TypeError, ValueError):
        return _control_error(f"expected JSON {usage}")
    except ApiError as exc:
        return _control_error(exc.message, exc.status)
    return jsonify({k: event[k] for k in ("action", "user_id", "object_id", "unix_timestamp")})


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

    def gotocourse(args: Args) -> Any:
        optional = {"logout_redirect", "course_completed_redirect", "header_hidden_options", "2fa"}
        if not {"user_id", "course_id"} <= set(args) or set(args) - {"user_id", "course_id"} - optional:
            raise ApiError(400, INVALID_ARGUMENTS)
        return {"goto_url": state.goto_url(request.host_url, args["user_id"], args["course_id"])}

    def gettimeline(args: Args) -> Any:
        event_type = args.pop("event_type", "")
        if not event_type:
            raise ApiError(400, INVALID_ARGUMENTS)
        return state.get_timeline(event_type, args)

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
        "gotocourse": ("GET", gotocourse),
        "gettimeline": ("GET", gettimeline),
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
