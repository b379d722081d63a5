"""The HTTP exchange both TalentLMS clients (v1 and v2) share: budget, timing, and errors by meaning.

A call is classified by what it means for the dispatcher (``service_layer.ports``):

============================================================  ==================================
what happened                                                 raised
============================================================  ==================================
quota spent or no short-limit slot within the max wait        ``LmsRateLimited`` (nothing sent)
connection refused, DNS failure, connect timeout, TLS setup   ``LmsUnavailable`` (nothing sent)
read timeout, reset/closed after sending, truncated answer    ``LmsInDoubt``
HTTP 5xx or 408                                               ``LmsInDoubt``
HTTP 429                                                      ``LmsRateLimited(retry_after)``
HTTP 401 / 403                                                ``LmsAuthRejected``
anything else                                                 the answer, for the client to read
============================================================  ==================================

Then each client reads the body: "user does not exist" → ``LmsUserMissing``, "course does not exist" →
``LmsCourseMissing``, "already enrolled" / "not enrolled" → success, anything else → ``TalentLmsError``
(an ``LmsPermanentError``). A 429 is never permanent.

Neither the API key nor an e-mail address appears in an exception or a log line: requests' own exceptions
(whose text holds the URL, hence the e-mail) are never chained or logged; reasons name ids only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import requests
import structlog
from prometheus_client import Counter, Gauge, Histogram
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from coursebridge.runtime.logging import scrub_text
from enrollment.adapters.budget import CallBudget
from enrollment.service_layer.ports import (
    LmsAuthRejected,
    LmsCourseMissing,
    LmsInDoubt,
    LmsPermanentError,
    LmsRateLimited,
    LmsUnavailable,
    LmsUserMissing,
)

log = structlog.get_logger(__name__)

LMS_CALLS = Counter(
    "coursebridge_lms_calls_total",
    "TalentLMS API calls by outcome (ok, already, in_doubt, unavailable, rate_limited, auth_rejected,"
    " user_missing, course_missing, permanent)",
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
    "X-RateLimit-Remaining of TalentLMS's last answer that carried it (whichever window it describes)",
    multiprocess_mode="livemin",
)
LMS_THROTTLED = Counter(
    "coursebridge_lms_throttled_total",
    "Calls not sent because the call budget (quota or short limit) had nothing to give within the max wait",
    ["call"],
)

ALREADY_ENROLLED = "already enrolled"
NOT_ENROLLED = "not enrolled"
EMAIL_EXISTS = "same email address already exists"
LOGIN_EXISTS = "same login already exists"
USER_DOES_NOT_EXIST = "user does not exist"
COURSE_DOES_NOT_EXIST = "course does not exist"


class TalentLmsError(LmsPermanentError):
    """A TalentLMS refusal no retry fixes; ``reason`` is TalentLMS's own message (scrubbed)."""

    def __init__(self, reason: str, *, call: str, status: int) -> None:
        super().__init__(reason)
        self.call = call
        self.status = status


class TalentLmsUserMissing(LmsUserMissing, TalentLmsError):
    """ "The requested user does not exist"."""


class TalentLmsCourseMissing(LmsCourseMissing, TalentLmsError):
    """ "The requested course does not exist"."""


class Refusal(Exception):
    """An error answer a public method may still treat as success (it decides, then counts)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def says(self, fragment: str) -> bool:
        return fragment in self.message.lower()


def new_session() -> requests.Session:
    """No transport retries (a retried POST could enrol twice behind our back); pooled keep-alive."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=64, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Transport:
    """Sends one request within the budget and classifies what cannot be read as an answer."""

    def __init__(
        self, budget: CallBudget, *, timeout: float, session: requests.Session | None = None
    ) -> None:
        self.budget = budget
        self.timeout = timeout
        self._owns_session = session is None
        self.session = session or new_session()

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def send(
        self, call: str, method: str, url: str, *, counted: bool = True, **kwargs: Any
    ) -> requests.Response:
        """The answer (2xx or an error to read), or one of the errors by meaning in the module table."""
        if counted:
            try:
                self.budget.reserve()
            except LmsRateLimited:
                LMS_THROTTLED.labels(call).inc()
                count(call, "rate_limited")
                raise
        started = time.perf_counter()
        failure: Exception | None = None
        try:
            response = self.session.request(
                method, url, timeout=self.timeout, allow_redirects=False, **kwargs
            )
        except requests.RequestException as exc:
            failure = self._classify(call, exc)
        finally:
            LMS_CALL_SECONDS.labels(call).observe(time.perf_counter() - started)
            if counted:
                self.budget.release()  # the slot's W seconds start when the call ends
        if failure is not None:
            # Raised outside the except block: requests' exception (its text holds the URL, hence the
            # e-mail) is not even kept as __context__.
            raise failure

        status = response.status_code
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip().lstrip("-").isdigit():
            LMS_RATE_LIMIT_REMAINING.set(int(remaining))
        self.budget.observe_headers(response.headers)
        if status == 429:
            delay = self.budget.on_rate_limited(call, response.headers)
            count(call, "rate_limited")
            raise LmsRateLimited(f"TalentLMS rate limit reached on {call}; retry in {delay:.1f}s", delay)
        if status in (401, 403):
            count(call, "auth_rejected")
            log.error("lms_auth_rejected", call=call, status=status)
            raise LmsAuthRejected(f"TalentLMS rejected the API key (HTTP {status})", status)
        if status >= 500 or status == 408:
            count(call, "in_doubt")
            log.warning("lms_call_failed", call=call, outcome="in_doubt", status=status)
            raise LmsInDoubt(f"TalentLMS answered {call} with HTTP {status}")
        return response

    def _classify(self, call: str, exc: requests.RequestException) -> Exception:
        if _nothing_sent(exc):
            count(call, "unavailable")
            log.warning("lms_call_failed", call=call, outcome="unavailable", error=type(exc).__name__)
            return LmsUnavailable(f"could not reach TalentLMS for {call} ({type(exc).__name__})")
        count(call, "in_doubt")
        log.warning("lms_call_failed", call=call, outcome="in_doubt", error=type(exc).__name__)
        if isinstance(exc, requests.Timeout):
            return LmsInDoubt(f"TalentLMS did not answer {call} within {self.timeout:g}s")
        return LmsInDoubt(f"the connection to TalentLMS failed during {call} ({type(exc).__name__})")


def _nothing_sent(exc: BaseException) -> bool:
    """True when the request cannot have reached TalentLMS: no connection was ever made."""
    if isinstance(
        exc, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.InvalidURL)
    ):
        return True
    if isinstance(exc, (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
        return True
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (NewConnectionError, ConnectTimeoutError)):
            return True
        pending.extend(item.args)
        pending.extend((getattr(item, "reason", None), item.__cause__, item.__context__))
    return False


def count(call: str, outcome: str) -> None:
    LMS_CALLS.labels(call, outcome).inc()


def refusal_error(call: str, refusal: Refusal, **ids: str | None) -> TalentLmsError:
    """The permanent error a refusal means (counted and logged with ids only)."""
    reason = clean(refusal.message)
    if refusal.says(USER_DOES_NOT_EXIST):
        error: TalentLmsError = TalentLmsUserMissing(reason, call=call, status=refusal.status)
        outcome = "user_missing"
    elif refusal.says(COURSE_DOES_NOT_EXIST):
        error = TalentLmsCourseMissing(reason, call=call, status=refusal.status)
        outcome = "course_missing"
    else:
        error = TalentLmsError(reason, call=call, status=refusal.status)
        outcome = "permanent"
    count(call, outcome)
    log.error("lms_call_failed", call=call, outcome=outcome, status=refusal.status, reason=reason, **ids)
    return error


def clean(message: str) -> str:
    """TalentLMS's message, with anything that looks like an e-mail, a secret or a phone masked."""
    return scrub_text(message.strip())[:300] or "unknown error"


def error_message(body: Any) -> str | None:
    """The message of an error body: v1 ``{"error": {"message"}}``, v2 ``{"type", "message"}`` at the top
    or under ``error`` (which of the two v2 uses is unconfirmed), or ``{"error": "text"}``."""
    if not isinstance(body, Mapping):
        return None
    if "error" in body:
        error = body["error"]
        if isinstance(error, Mapping):
            return str(error.get("message") or error.get("type") or "unknown error")
        return str(error)
    if "message" in body and ("type" in body or "_data" not in body):
        return str(body["message"])
    return None


def json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
