"""``LearningPlatform`` over the TalentLMS v1 REST API (or the local fake, ``libs/talentlms-fake``).

Wire format (``shared/reference/talentlms-api.md``): HTTP Basic auth with the API key as user name and an
empty password; POST bodies form-encoded; GET arguments in the path as ``key:value`` pairs separated by
commas, each value URL-encoded (``users/email:ana%2Btag%40example.com``).

TalentLMS's per-error HTTP codes are not documented, so answers are classified by message first:

=====================================================  =========================================
answer                                                 outcome
=====================================================  =========================================
2xx with a JSON body (no ``error``)                    success (``ok``)
"...already enrolled..." on ``enroll``                 ``False``: success (``already``)
"...not enrolled..." on ``unenroll``                   ``False``: success (``already``)
"same email address already exists" on ``sign_up``     the existing user is looked up and returned
"same login already exists" on ``sign_up``             lookup by email, else retry with a suffixed login
"The requested user does not exist" on a lookup        ``None``
429                                                    ``back_off`` on the limiter, ``LmsTransientError``
5xx, 408, timeout, connection error, unreadable 2xx    ``LmsTransientError``
401 / 403                                              ``LmsPermanentError`` (API key rejected)
any other error                                        ``TalentLmsError`` (an ``LmsPermanentError``)
=====================================================  =========================================

Neither the API key nor an email address ever appears in an exception message or a log line: requests'
own exceptions (whose text holds the URL, hence the email) are never chained or logged, and reasons name
users and courses by id only.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests
import structlog
from prometheus_client import Counter, Gauge, Histogram
from requests.adapters import HTTPAdapter

from coursebridge.config import secret_env
from coursebridge.runtime.logging import register_secret, scrub_text
from enrollment.adapters.rate_limit import RateLimiter
from enrollment.service_layer.ports import (
    LmsCourse,
    LmsPermanentError,
    LmsTransientError,
    LmsUser,
)

log = structlog.get_logger(__name__)

LMS_CALLS = Counter(
    "coursebridge_lms_calls_total",
    "TalentLMS API calls by outcome (ok, already, transient, permanent, rate_limited)",
    ["call", "outcome"],
)
LMS_CALL_SECONDS = Histogram(
    "coursebridge_lms_call_seconds",
    "TalentLMS API call latency (the HTTP exchange only, not the wait for the rate limiter)",
    ["call"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LMS_RATE_LIMIT_REMAINING = Gauge(
    "coursebridge_lms_rate_limit_remaining",
    "Calls left in TalentLMS's current window, as last reported (X-RateLimit-Remaining or GET ratelimit)",
    multiprocess_mode="livemin",
)
LMS_THROTTLED = Counter(
    "coursebridge_lms_throttled_total",
    "Calls not sent because the client-side limiter could not grant a slot within its max wait",
    ["call"],
)

DEFAULT_BACKOFF_SECONDS = 5.0  # on a 429 without Retry-After / X-RateLimit-Reset: one TalentLMS window
MAX_BACKOFF_SECONDS = 3600.0
LOGIN_RETRIES = 2

ALREADY_ENROLLED = "already enrolled"
NOT_ENROLLED = "not enrolled"
EMAIL_EXISTS = "same email address already exists"
LOGIN_EXISTS = "same login already exists"
USER_DOES_NOT_EXIST = "user does not exist"


class TalentLmsError(LmsPermanentError):
    """A TalentLMS error answer no retry will fix; ``reason`` is TalentLMS's own message (scrubbed)."""

    def __init__(self, reason: str, *, call: str, status: int) -> None:
        super().__init__(reason)
        self.call = call
        self.status = status


class _Refusal(Exception):
    """An error answer a public method may still treat as success (it decides, then counts)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class RateLimitStatus:
    """``GET ratelimit``: the quota TalentLMS reports (not counted against it)."""

    limit: int
    remaining: int
    reset: float  # epoch seconds
    formatted_reset: str


class TalentLmsClient:
    """The TalentLMS v1 API as a ``LearningPlatform``. Thread-safe; share one per process."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        limiter: RateLimiter | None = None,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url or not api_key:
            raise ValueError("TalentLMS needs a base URL and an API key")
        register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.timeout = timeout
        self._auth = (api_key, "")
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            # No transport retries: a retried POST could enrol twice behind our back. Enough pooled
            # connections for the worker's threads.
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=64, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self._session = session

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TalentLmsClient:
        """TALENTLMS_BASE_URL, TALENTLMS_API_KEY, TALENTLMS_TIMEOUT_SECONDS and the limiter's variables."""
        env = os.environ if environ is None else environ
        return cls(
            env["TALENTLMS_BASE_URL"],
            secret_env("TALENTLMS_API_KEY", env) or env["TALENTLMS_API_KEY"],
            limiter=RateLimiter.from_env(env),
            timeout=float(env.get("TALENTLMS_TIMEOUT_SECONDS") or 10.0),
        )

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # --- LearningPlatform ---------------------------------------------------------------------------------

    def find_user_by_email(self, email: str) -> LmsUser | None:
        return self._find_user("find_user", "email", email)

    def find_user_by_id(self, user_id: str) -> LmsUser | None:
        return self._find_user("find_user", "id", user_id)

    def sign_up(self, *, email: str, first_name: str, last_name: str, login: str, password: str) -> LmsUser:
        """Create the user; an existing user with that email is returned instead (one extra lookup).

        A login taken by someone else (a different email) is retried with a random suffix, at most
        ``LOGIN_RETRIES`` times: the login is ours to choose, the student signs in by email.
        """
        form = {"first_name": first_name, "last_name": last_name, "email": email, "password": password}
        attempt_login = login
        for attempt in range(LOGIN_RETRIES + 1):
            try:
                body = self._send("sign_up", "POST", "usersignup", form={**form, "login": attempt_login})
            except _Refusal as refusal:
                if _says(refusal, EMAIL_EXISTS):
                    self._count("sign_up", "already")
                    return self._existing_user(email)
                if _says(refusal, LOGIN_EXISTS):
                    self._count("sign_up", "already")
                    existing = self.find_user_by_email(email)
                    if existing is not None:
                        return existing
                    if attempt < LOGIN_RETRIES:
                        attempt_login = f"{login}-{secrets.token_hex(2 + attempt)}"
                        log.info("lms_login_taken_retrying", call="sign_up", attempt=attempt + 1)
                        continue
                raise self._permanent("sign_up", refusal) from None
            self._count("sign_up", "ok")
            return _user(body)
        raise AssertionError("unreachable")  # pragma: no cover

    def enroll(self, user_id: str, course_id: str) -> bool:
        form = {"user_id": str(user_id), "course_id": str(course_id), "role": "learner"}
        try:
            self._send("enroll", "POST", "addusertocourse", form=form)
        except _Refusal as refusal:
            if _says(refusal, ALREADY_ENROLLED):
                self._count("enroll", "already")
                return False
            raise self._permanent("enroll", refusal, user_id=user_id, course_id=course_id) from None
        self._count("enroll", "ok")
        return True

    def unenroll(self, user_id: str, course_id: str) -> bool:
        args = {"user_id": str(user_id), "course_id": str(course_id)}
        try:
            self._send("unenroll", "GET", "removeuserfromcourse", args=args)
        except _Refusal as refusal:
            if _says(refusal, NOT_ENROLLED):
                self._count("unenroll", "already")
                return False
            raise self._permanent("unenroll", refusal, user_id=user_id, course_id=course_id) from None
        self._count("unenroll", "ok")
        return True

    def set_user_active(self, user_id: str, active: bool) -> None:
        args = {"user_id": str(user_id), "status": "active" if active else "inactive"}
        try:
            self._send("set_status", "GET", "usersetstatus", args=args)
        except _Refusal as refusal:
            raise self._permanent("set_status", refusal, user_id=user_id) from None
        self._count("set_status", "ok")

    def list_courses(self) -> list[LmsCourse]:
        try:
            body = self._send("list_courses", "GET", "courses")
        except _Refusal as refusal:
            raise self._permanent("list_courses", refusal) from None
        self._count("list_courses", "ok")
        if not isinstance(body, list):
            raise LmsTransientError("TalentLMS answered courses with something other than a list")
        return [LmsCourse(id=str(c["id"]), name=str(c.get("name", ""))) for c in body if isinstance(c, dict)]

    def rate_limit_status(self) -> RateLimitStatus:
        """``GET ratelimit`` (not counted by TalentLMS, so it skips the limiter); updates the gauge."""
        try:
            body = self._send("rate_limit", "GET", "ratelimit", limited=False)
        except _Refusal as refusal:
            raise self._permanent("rate_limit", refusal) from None
        self._count("rate_limit", "ok")
        try:
            status = RateLimitStatus(
                limit=int(body["limit"]),
                remaining=int(body["remaining"]),
                reset=float(body["reset"]),
                formatted_reset=str(body.get("formatted_reset", "")),
            )
        except (KeyError, TypeError, ValueError):
            raise LmsTransientError("TalentLMS answered ratelimit in an unexpected shape") from None
        LMS_RATE_LIMIT_REMAINING.set(status.remaining)
        return status

    # --- plumbing -----------------------------------------------------------------------------------------

    def _find_user(self, call: str, key: str, value: str) -> LmsUser | None:
        try:
            body = self._send(call, "GET", "users", args={key: value})
        except _Refusal as refusal:
            if _says(refusal, USER_DOES_NOT_EXIST):
                self._count(call, "ok")
                return None
            raise self._permanent(call, refusal) from None
        self._count(call, "ok")
        return _user(body)

    def _existing_user(self, email: str) -> LmsUser:
        user = self.find_user_by_email(email)
        if user is None:
            # Reported as taken, then not found: deleted in between, or a lagging replica. Try again later.
            raise LmsTransientError("TalentLMS reported the email as taken but the user was not found")
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
        limited: bool = True,
    ) -> Any:
        """The JSON body of a successful answer; ``_Refusal`` for an error answer a caller may accept.

        Transient failures are counted here and raised as ``LmsTransientError``.
        """
        limiter = self.limiter if limited else None
        if limiter is not None:
            try:
                limiter.reserve()
            except LmsTransientError:
                LMS_THROTTLED.labels(call).inc()
                raise
        started = time.perf_counter()
        failure: str | None = None
        try:
            response = self._session.request(
                method,
                self._url(action, args),
                data=dict(form) if form is not None else None,
                auth=self._auth,
                timeout=self.timeout,
                headers={"Accept": "application/json"},
                allow_redirects=False,
            )
        except requests.Timeout:
            failure = f"TalentLMS did not answer {call} within {self.timeout:g}s"
        except requests.RequestException as exc:
            failure = f"could not reach TalentLMS for {call} ({type(exc).__name__})"
        finally:
            LMS_CALL_SECONDS.labels(call).observe(time.perf_counter() - started)
            if limiter is not None:
                limiter.release()  # the slot's W seconds start when the call ends
        if failure is not None:
            # Raised outside the except blocks: requests' exception (its text holds the URL, hence the
            # email) is not even kept as __context__.
            raise self._transient(call, failure)

        status = response.status_code
        remaining = _int_header(response.headers.get("X-RateLimit-Remaining"))
        if remaining is not None:
            LMS_RATE_LIMIT_REMAINING.set(remaining)
        try:
            body = response.json()
        except ValueError:
            body = None
        message = _error_message(body)

        if status == 429:
            delay = _retry_delay(response.headers)
            if self.limiter is not None:
                self.limiter.back_off(delay)
            self._count(call, "rate_limited")
            log.warning("lms_rate_limited", call=call, back_off_seconds=round(delay, 3))
            raise LmsTransientError(f"TalentLMS rate limit reached on {call}; retry in {delay:.1f}s")
        if status >= 500 or status == 408:
            raise self._transient(call, f"TalentLMS answered {call} with HTTP {status}", status=status)
        if status in (401, 403):
            reason = f"TalentLMS rejected the API key (HTTP {status}"
            reason += f": {_clean(message)})" if message else ")"
            self._count(call, "permanent")
            log.error("lms_call_failed", call=call, outcome="permanent", status=status)
            raise TalentLmsError(reason, call=call, status=status)
        if message is not None:
            raise _Refusal(message, status)
        if not 200 <= status < 300:
            self._count(call, "permanent")
            log.error("lms_call_failed", call=call, outcome="permanent", status=status)
            raise TalentLmsError(
                f"TalentLMS answered {call} with HTTP {status} and no error message"
                " (check TALENTLMS_BASE_URL)",
                call=call,
                status=status,
            )
        if body is None:
            raise self._transient(call, f"TalentLMS answered {call} with an unreadable body", status=status)
        return body

    def _transient(self, call: str, reason: str, *, status: int | None = None) -> LmsTransientError:
        self._count(call, "transient")
        log.warning("lms_call_failed", call=call, outcome="transient", status=status)
        return LmsTransientError(reason)

    def _permanent(
        self,
        call: str,
        refusal: _Refusal,
        *,
        user_id: str | None = None,
        course_id: str | None = None,
    ) -> TalentLmsError:
        self._count(call, "permanent")
        reason = _clean(refusal.message)
        log.error(
            "lms_call_failed",
            call=call,
            outcome="permanent",
            status=refusal.status,
            reason=reason,
            lms_user_id=user_id,
            course_id=course_id,
        )
        return TalentLmsError(reason, call=call, status=refusal.status)

    @staticmethod
    def _count(call: str, outcome: str) -> None:
        LMS_CALLS.labels(call, outcome).inc()


def _user(body: Any) -> LmsUser:
    if not isinstance(body, dict) or "id" not in body:
        raise LmsTransientError("TalentLMS answered with a user in an unexpected shape")
    return LmsUser(
        id=str(body["id"]),
        email=str(body.get("email", "")),
        login=str(body.get("login", "")),
        active=str(body.get("status", "active")).lower() == "active",
    )


def _error_message(body: Any) -> str | None:
    if not isinstance(body, dict) or "error" not in body:
        return None
    error = body["error"]
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "unknown error")
    return str(error)


def _says(refusal: _Refusal, fragment: str) -> bool:
    return fragment in refusal.message.lower()


def _clean(message: str) -> str:
    """TalentLMS's message, with anything that looks like an email, a secret or a phone masked."""
    return scrub_text(message.strip())[:300] or "unknown error"


def _int_header(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _reset_delay(headers: Mapping[str, str]) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (an epoch timestamp; a small number is read as seconds)."""
    raw = headers.get("X-RateLimit-Reset")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    delay = value - time.time() if value > 1_000_000_000 else value
    return min(max(delay, 0.0), MAX_BACKOFF_SECONDS)


def _retry_delay(headers: Mapping[str, str]) -> float:
    """How long to pause after a 429: Retry-After (seconds or HTTP date), else X-RateLimit-Reset."""
    raw = headers.get("Retry-After")
    if raw is not None:
        try:
            delay = float(raw)
        except ValueError:
            try:
                when = parsedate_to_datetime(raw)
                delay = when.timestamp() - time.time()
            except (TypeError, ValueError):
                delay = math.nan
        if not math.isnan(delay):
            return min(max(delay, 0.0), MAX_BACKOFF_SECONDS)
    reset = _reset_delay(headers)
    if reset is not None and reset > 0:
        return reset
    return DEFAULT_BACKOFF_SECONDS
