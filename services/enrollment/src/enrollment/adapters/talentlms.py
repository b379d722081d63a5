"""TalentLMS API v1: the proven path for single calls (sign-up, enrol, read back, quota, go-to links).

Wire format (``shared/reference/talentlms-api.md``): HTTP Basic auth with the API key as user name and an
empty password; POST bodies form-encoded; GET arguments in the path as ``key:value`` pairs separated by
commas, each value URL-encoded (``users/email:ana%2Btag%40example.com``).

TalentLMS's per-error HTTP codes are not documented, so answers are read by message (after the transport
has classified 429, 401/403, 5xx, timeouts and connection failures: ``lms_http``):

=====================================================  =========================================
answer                                                 outcome
=====================================================  =========================================
2xx with a JSON body (no ``error``)                    success (``ok``)
"...already enrolled..." on ``enroll``                 ``False``: success (``already``)
"...not enrolled..." on ``unenroll``                   ``False``: success (``already``)
"same email address already exists" on ``sign_up``     the existing user is looked up and returned
"same login already exists" on ``sign_up``             lookup by email, else retry with a suffixed login
"The requested user does not exist" on a lookup        ``None``
"The requested user does not exist" elsewhere          ``LmsUserMissing``
"The requested course does not exist"                  ``LmsCourseMissing``
an unreadable 2xx                                      ``LmsInDoubt``
any other error                                        ``TalentLmsError`` (an ``LmsPermanentError``)
=====================================================  =========================================
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import requests
import structlog

from coursebridge.config import secret_env
from coursebridge.runtime.logging import register_secret
from enrollment.adapters.budget import CallBudget, retry_delay
from enrollment.adapters.lms_http import (
    ALREADY_ENROLLED,
    EMAIL_EXISTS,
    LOGIN_EXISTS,
    NOT_ENROLLED,
    USER_DOES_NOT_EXIST,
    Refusal,
    TalentLmsCourseMissing,
    TalentLmsError,
    TalentLmsUserMissing,
    Transport,
    count,
    error_message,
    json_or_none,
    refusal_error,
)
from enrollment.adapters.rate_limit import RateLimiter
from enrollment.service_layer.ports import LmsCourse, LmsInDoubt, LmsUser, NewUser, Quota, TimelineEntry

log = structlog.get_logger(__name__)

LOGIN_RETRIES = 2

__all__ = [
    "LOGIN_RETRIES",
    "TalentLmsClient",
    "TalentLmsCourseMissing",
    "TalentLmsError",
    "TalentLmsUserMissing",
    "retry_delay",
]


class TalentLmsClient:
    """The TalentLMS v1 API. Thread-safe; share one per process (with the v2 client's ``CallBudget``).

    ``budget``: the deployment's one budget; without it, one is made from ``limiter`` with no configured
    quota (it still learns one from ``quota()``).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        budget: CallBudget | None = None,
        limiter: RateLimiter | None = None,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url or not api_key:
            raise ValueError("TalentLMS needs a base URL and an API key")
        register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        self.budget = budget if budget is not None else CallBudget(limiter, hourly_quota=None)
        self.timeout = timeout
        self._auth = (api_key, "")
        self._transport = Transport(self.budget, timeout=timeout, session=session)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TalentLmsClient:
        """TALENTLMS_BASE_URL, TALENTLMS_API_KEY, TALENTLMS_TIMEOUT_SECONDS and the budget's variables."""
        env = os.environ if environ is None else environ
        return cls(
            env["TALENTLMS_BASE_URL"],
            secret_env("TALENTLMS_API_KEY", env) or env["TALENTLMS_API_KEY"],
            budget=CallBudget.from_env(env),
            timeout=float(env.get("TALENTLMS_TIMEOUT_SECONDS") or 10.0),
        )

    @property
    def limiter(self) -> RateLimiter | None:
        return self.budget.limiter

    def close(self) -> None:
        self._transport.close()

    # --- users -------------------------------------------------------------------------------------------

    def find_user_by_email(self, email: str) -> LmsUser | None:
        body = self._find_user("find_user", "email", email)
        return None if body is None else _user(body)

    def find_user_by_id(self, user_id: str) -> LmsUser | None:
        body = self._find_user("find_user", "id", user_id)
        return None if body is None else _user(body)

    def sign_up(self, new_user: NewUser) -> LmsUser:
        """Create the user; an existing user with that email is returned instead (one extra lookup).

        A login taken by someone else (a different email) is retried with a random suffix, at most
        ``LOGIN_RETRIES`` times: the login is ours to choose, the student signs in by email.
        """
        form = {
            "first_name": new_user.first_name,
            "last_name": new_user.last_name,
            "email": new_user.email,
            "password": new_user.password,
        }
        attempt_login = new_user.login
        for attempt in range(LOGIN_RETRIES + 1):
            try:
                body = self._send("sign_up", "POST", "usersignup", form={**form, "login": attempt_login})
            except Refusal as refusal:
                if refusal.says(EMAIL_EXISTS):
                    count("sign_up", "already")
                    return self._existing_user(new_user.email)
                if refusal.says(LOGIN_EXISTS):
                    count("sign_up", "already")
                    existing = self.find_user_by_email(new_user.email)
                    if existing is not None:
                        return existing
                    if attempt < LOGIN_RETRIES:
                        attempt_login = f"{new_user.login}-{secrets.token_hex(2 + attempt)}"
                        log.info("lms_login_taken_retrying", call="sign_up", attempt=attempt + 1)
                        continue
                raise refusal_error("sign_up", refusal) from None
            count("sign_up", "ok")
            return replace(_user(body), courses=frozenset())  # created just now: no course yet
        raise AssertionError("unreachable")  # pragma: no cover

    def user_courses(self, user_id: str) -> set[str]:
        """``users/id:X`` → ``courses[]`` ids; ``LmsUserMissing`` when the user is gone."""
        try:
            body = self._send("user_courses", "GET", "users", args={"id": user_id})
        except Refusal as refusal:
            raise refusal_error("user_courses", refusal, lms_user_id=user_id) from None
        ids = _ids(body, "courses", "user_courses")
        count("user_courses", "ok")
        return ids

    def set_user_active(self, user_id: str, active: bool) -> None:
        args = {"user_id": str(user_id), "status": "active" if active else "inactive"}
        try:
            self._send("set_status", "GET", "usersetstatus", args=args)
        except Refusal as refusal:
            raise refusal_error("set_status", refusal, lms_user_id=user_id) from None
        count("set_status", "ok")

    # --- enrollments -------------------------------------------------------------------------------------

    def enroll(self, user_id: str, course_id: str) -> bool:
        form = {"user_id": str(user_id), "course_id": str(course_id), "role": "learner"}
        try:
            self._send("enroll", "POST", "addusertocourse", form=form)
        except Refusal as refusal:
            if refusal.says(ALREADY_ENROLLED):
                count("enroll", "already")
                return False
            raise refusal_error("enroll", refusal, lms_user_id=user_id, course_id=course_id) from None
        count("enroll", "ok")
        return True

    def unenroll(self, user_id: str, course_id: str) -> bool:
        args = {"user_id": str(user_id), "course_id": str(course_id)}
        try:
            self._send("unenroll", "GET", "removeuserfromcourse", args=args)
        except Refusal as refusal:
            if refusal.says(NOT_ENROLLED):
                count("unenroll", "already")
                return False
            raise refusal_error("unenroll", refusal, lms_user_id=user_id, course_id=course_id) from None
        count("unenroll", "ok")
        return True

    # --- courses -----------------------------------------------------------------------------------------

    def list_courses(self) -> list[LmsCourse]:
        try:
            body = self._send("list_courses", "GET", "courses")
        except Refusal as refusal:
            raise refusal_error("list_courses", refusal) from None
        count("list_courses", "ok")
        if not isinstance(body, list):
            raise LmsInDoubt("TalentLMS answered courses with something other than a list")
        return [LmsCourse(id=str(c["id"]), name=str(c.get("name", ""))) for c in body if isinstance(c, dict)]

    def course_users(self, course_id: str) -> set[str]:
        """``courses/id:X`` → ``users[]`` ids; ``LmsCourseMissing`` when the course is gone."""
        try:
            body = self._send("course_users", "GET", "courses", args={"id": course_id})
        except Refusal as refusal:
            raise refusal_error("course_users", refusal, course_id=course_id) from None
        ids = _ids(body, "users", "course_users")
        count("course_users", "ok")
        return ids

    # --- learning activity -------------------------------------------------------------------------------

    def timeline(
        self, event_type: str, *, user_id: str | None = None, course_id: str | None = None
    ) -> list[TimelineEntry]:
        """``gettimeline/event_type:T[,user_id:U][,course_id:C]``: the last 200 events of the type.

        The answer names the user (login, e-mail, full name): only the ids and the time are kept, and
        nothing of it is logged. Entries come back oldest first, sorted here (the answer's order is not
        documented); an entry without a user id or a readable ``unix_timestamp`` is skipped (count logged).
        """
        args = {"event_type": event_type}
        if user_id is not None:
            args["user_id"] = str(user_id)
        if course_id is not None:
            args["course_id"] = str(course_id)
        try:
            body = self._send("timeline", "GET", "gettimeline", args=args)
        except Refusal as refusal:
            raise refusal_error("timeline", refusal, course_id=course_id) from None
        if isinstance(body, dict) and not body:
            body = []  # an empty answer may come as {} from a PHP backend
        if not isinstance(body, list):
            count("timeline", "in_doubt")
            raise LmsInDoubt("TalentLMS answered gettimeline with something other than a list")
        entries = [e for e in (_timeline_entry(event_type, item) for item in body) if e is not None]
        count("timeline", "ok")
        if len(entries) < len(body):
            # Ids and counts only: an entry also names the user.
            log.warning(
                "lms_timeline_entries_unreadable", event_type=event_type, skipped=len(body) - len(entries)
            )
        entries.sort(key=lambda e: (e.occurred_at, e.key))
        return entries

    # --- budget and links --------------------------------------------------------------------------------

    def quota(self) -> Quota:
        """``GET ratelimit``: not counted by TalentLMS, so it skips the budget; the budget learns from it."""
        try:
            body = self._send("quota", "GET", "ratelimit", counted=False)
        except Refusal as refusal:
            raise refusal_error("quota", refusal) from None
        try:
            quota = Quota(
                limit=int(body["limit"]), remaining=int(body["remaining"]), reset_at=float(body["reset"])
            )
        except (KeyError, TypeError, ValueError):
            count("quota", "in_doubt")
            raise LmsInDoubt("TalentLMS answered ratelimit in an unexpected shape") from None
        count("quota", "ok")
        self.budget.learn(quota)
        return quota

    def course_link(self, user_id: str, course_id: str) -> str:
        """``gotocourse``: a one-click sign-in link into the course (short-lived: never log or store it)."""
        args = {"user_id": str(user_id), "course_id": str(course_id)}
        try:
            body = self._send("course_link", "GET", "gotocourse", args=args)
        except Refusal as refusal:
            raise refusal_error("course_link", refusal, lms_user_id=user_id, course_id=course_id) from None
        url = body.get("goto_url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            count("course_link", "in_doubt")
            raise LmsInDoubt("TalentLMS answered gotocourse without a goto_url")
        count("course_link", "ok")
        return url

    # --- plumbing ----------------------------------------------------------------------------------------

    def _find_user(self, call: str, key: str, value: str) -> dict[str, Any] | None:
        try:
            body = self._send(call, "GET", "users", args={key: value})
        except Refusal as refusal:
            if refusal.says(USER_DOES_NOT_EXIST):
                count(call, "ok")
                return None
            raise refusal_error(call, refusal) from None
        count(call, "ok")
        return body

    def _existing_user(self, email: str) -> LmsUser:
        user = self.find_user_by_email(email)
        if user is None:
            # Reported as taken, then not found: deleted in between, or a lagging replica. Find out later.
            raise LmsInDoubt("TalentLMS reported the email as taken but the user was not found")
        return user

    def _url(self, action: str, args: Mapping[str, str] | None) -> str:
        url = f"{self.base_url}/{action}"
        if args:
            url += "/" + ",".join(f"{key}:{quote(str(value), safe='')}" for key, value in args.items())
        return url

    def _send(
        self,
        call: str,
        method: str,
        action: str,
        *,
        args: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        counted: bool = True,
    ) -> Any:
        """The JSON body of a successful answer; ``Refusal`` for an error answer a caller may accept."""
        response = self._transport.send(
            call,
            method,
            self._url(action, args),
            counted=counted,
            data=dict(form) if form is not None else None,
            auth=self._auth,
            headers={"Accept": "application/json"},
        )
        body = json_or_none(response)
        message = error_message(body) if isinstance(body, dict) and "error" in body else None
        if message is None and not 200 <= response.status_code < 300:
            message = error_message(body)
        if message is not None:
            raise Refusal(message, response.status_code)
        if not 200 <= response.status_code < 300:
            count(call, "permanent")
            log.error("lms_call_failed", call=call, outcome="permanent", status=response.status_code)
            raise TalentLmsError(
                f"TalentLMS answered {call} with HTTP {response.status_code} and no error message"
                " (check TALENTLMS_BASE_URL)",
                call=call,
                status=response.status_code,
            )
        if body is None:
            count(call, "in_doubt")
            raise LmsInDoubt(f"TalentLMS answered {call} with an unreadable body")
        return body


def _user(body: Any) -> LmsUser:
    if not isinstance(body, dict) or "id" not in body:
        raise LmsInDoubt("TalentLMS answered with a user in an unexpected shape")
    courses = body.get("courses")
    return LmsUser(
        id=str(body["id"]),
        email=str(body.get("email", "")),
        login=str(body.get("login", "")),
        active=str(body.get("status", "active")).lower() == "active",
        # ``users/email:`` and ``users/id:`` list the user's courses; a sign-up answer does not.
        courses=(
            frozenset(str(c["id"]) for c in courses if isinstance(c, dict) and "id" in c)
            if isinstance(courses, list)
            else None
        ),
    )


def _timeline_entry(event_type: str, item: Any) -> TimelineEntry | None:
    if not isinstance(item, dict):
        return None
    user_id = str(item.get("user_id") or "").strip()
    try:
        occurred_at = int(float(str(item.get("unix_timestamp"))))
    except ValueError:
        return None
    if not user_id or occurred_at <= 0:
        return None
    course_id: str | None = None
    if event_type.startswith("course_"):
        course_id = str(item.get("object_id") or "").strip() or None
        if course_id is None:
            return None
    return TimelineEntry(event_type=event_type, user_id=user_id, occurred_at=occurred_at, course_id=course_id)


def _ids(body: Any, key: str, call: str) -> set[str]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        count(call, "in_doubt")
        raise LmsInDoubt(f"TalentLMS answered {call} without a {key} list")
    return {str(item["id"]) for item in items if isinstance(item, dict) and "id" in item}
