"""One budget for every TalentLMS call of a deployment: the 5-second limit AND the hourly quota.

TalentLMS counts v1 and v2 calls (task polls included) against the same two limits: 200 calls per 5 s on
every plan, and an hourly quota by plan (2,000 on Core/Basic, 10,000 on Grow and up). ``CallBudget`` is
shared by the v1 and v2 clients of one process (the deployment's one active dispatcher):

- the short limit is the sliding-window ``RateLimiter`` (a slot is held until W seconds after its call
  ENDED: see ``rate_limit.py``);
- the quota is tracked here. It starts from configuration (``TALENTLMS_HOURLY_QUOTA``, default 2,000),
  decrements locally for every call sent, and follows what TalentLMS says whenever it says it:
  ``GET ratelimit`` (v1, not counted; the dispatcher calls ``refresh()``) and ``X-RateLimit-*`` headers.
  When the quota is spent, ``reserve()`` raises ``LmsRateLimited(retry_after=seconds until the reset)``
  WITHOUT sending: at most one 429 reaches us per surprise (a quota smaller than configured, another
  client of the portal), after which the budget knows.

Unconfirmed by the sources, and designed for: whether ``X-RateLimit-*`` describe the hour or the 5 s
(``_describes_quota`` decides per answer: a reset more than one short window away, or a limit above the
short limit, is the quota; anything else is ignored for the quota), whether v1 sends them at all (then only
``GET ratelimit`` teaches), and when TalentLMS's hour starts (until told, the local model assumes the
hour began at the first call after the last reset, which errs towards waiting).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime

import structlog
from prometheus_client import Counter, Gauge

from enrollment.adapters.rate_limit import RateLimiter
from enrollment.service_layer.ports import LmsRateLimited, Quota

log = structlog.get_logger(__name__)

LMS_QUOTA_REMAINING = Gauge(
    "coursebridge_lms_quota_remaining",
    "TalentLMS hourly quota left, as this process believes it (learned from TalentLMS, decremented per call)",
    multiprocess_mode="livemin",
)
LMS_429 = Counter(
    "coursebridge_lms_429_total",
    "TalentLMS answers with HTTP 429 (the budget should keep this near zero)",
    ["call"],
)

DEFAULT_HOURLY_QUOTA = 2000
DEFAULT_QUOTA_WINDOW_SECONDS = 3600.0
PORTAL_SHORT_LIMIT = 200  # TalentLMS's own 5-second limit (the limiter keeps headroom under it)
PORTAL_SHORT_WINDOW_SECONDS = 5.0
DEFAULT_BACKOFF_SECONDS = 5.0  # a 429 with neither Retry-After nor X-RateLimit-Reset: one short window
MAX_BACKOFF_SECONDS = 3600.0


class CallBudget:
    """The short limit and the hourly quota of one TalentLMS portal, as seen by this process.

    ``limiter``: None means no client-side short limit (tests). ``hourly_quota``: None means "unknown until
    TalentLMS says"; nothing is refused locally before that. ``clock`` is epoch seconds (TalentLMS reports
    its reset as an epoch timestamp). ``refresher`` is what ``refresh()`` calls (the facade sets it to v1's
    ``GET ratelimit``).
    """

    def __init__(
        self,
        limiter: RateLimiter | None = None,
        *,
        hourly_quota: int | None = DEFAULT_HOURLY_QUOTA,
        quota_window_seconds: float = DEFAULT_QUOTA_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        refresher: Callable[[], Quota] | None = None,
    ) -> None:
        if hourly_quota is not None and hourly_quota < 1:
            raise ValueError("hourly_quota must be >= 1 (or None: learn it from TalentLMS)")
        if quota_window_seconds <= 0:
            raise ValueError("quota_window_seconds must be > 0")
        self.limiter = limiter
        self.quota_window_seconds = quota_window_seconds
        self.refresher = refresher
        self._clock = clock
        self._lock = threading.Lock()
        self._limit = hourly_quota
        self._remaining: int | None = hourly_quota
        self._reset_at: float | None = None  # unknown until the first call or TalentLMS says
        self._in_flight = 0
        self.last_learned_at: float | None = None
        if hourly_quota is not None:
            LMS_QUOTA_REMAINING.set(hourly_quota)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: object) -> CallBudget:
        """``TALENTLMS_HOURLY_QUOTA`` (2000), ``TALENTLMS_QUOTA_WINDOW_SECONDS`` (3600) and the limiter's."""
        env = os.environ if environ is None else environ
        return cls(
            RateLimiter.from_env(env),
            hourly_quota=int(env.get("TALENTLMS_HOURLY_QUOTA") or DEFAULT_HOURLY_QUOTA),
            quota_window_seconds=float(
                env.get("TALENTLMS_QUOTA_WINDOW_SECONDS") or DEFAULT_QUOTA_WINDOW_SECONDS
            ),
            **kwargs,  # type: ignore[arg-type]
        )

    # --- reading -----------------------------------------------------------------------------------------

    @property
    def limit(self) -> int | None:
        with self._lock:
            return self._limit

    @property
    def remaining(self) -> int | None:
        """Calls left in the quota's current hour (None: no quota configured and none learned yet)."""
        with self._lock:
            self._roll(self._clock())
            return self._remaining

    @property
    def reset_at(self) -> float | None:
        """Epoch seconds when the quota refills (None: not known yet: no call since the last reset)."""
        with self._lock:
            self._roll(self._clock())
            return self._reset_at

    @property
    def calls_available_now(self) -> int:
        """Calls that could be sent right now without waiting: the smaller of both limits."""
        with self._lock:
            self._roll(self._clock())
            quota = self._remaining
        short = self.limiter.available() if self.limiter is not None else None
        candidates = [n for n in (quota, short) if n is not None]
        return max(0, min(candidates)) if candidates else PORTAL_SHORT_LIMIT

    def seconds_until_quota(self) -> float:
        """0 while the quota has calls left, else the seconds until it refills."""
        with self._lock:
            now = self._clock()
            self._roll(now)
            if self._remaining is None or self._remaining > 0 or self._reset_at is None:
                return 0.0
            return max(0.0, self._reset_at - now)

    # --- taking ------------------------------------------------------------------------------------------

    def reserve(self, max_wait: float | None = None) -> None:
        """Take one call from the quota and a slot of the short limit, or raise ``LmsRateLimited``.

        Nothing is sent by the caller when this raises. ``release()`` must follow the call.
        """
        with self._lock:
            now = self._clock()
            self._roll(now)
            if self._remaining is not None and self._remaining <= 0:
                wait = (self._reset_at - now) if self._reset_at is not None else self.quota_window_seconds
                raise LmsRateLimited(
                    f"TalentLMS hourly quota spent; it refills in {wait:.0f}s", retry_after=max(wait, 0.0)
                )
            if self._remaining is not None:
                self._remaining -= 1
                if self._reset_at is None:
                    self._reset_at = now + self.quota_window_seconds  # the hour starts with this call
            self._in_flight += 1
            remaining = self._remaining
        if remaining is not None:
            LMS_QUOTA_REMAINING.set(remaining)
        if self.limiter is not None:
            try:
                self.limiter.reserve(max_wait)
            except BaseException:
                with self._lock:
                    self._in_flight -= 1
                    if self._remaining is not None:
                        self._remaining += 1  # never sent: give the call back
                raise

    def release(self) -> None:
        """The reserved call ended (answer, error or timeout)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
        if self.limiter is not None:
            self.limiter.release()

    @contextmanager
    def call(self, max_wait: float | None = None) -> Iterator[None]:
        """``with budget.call(): send()``."""
        self.reserve(max_wait)
        try:
            yield
        finally:
            self.release()

    # --- learning ----------------------------------------------------------------------------------------

    def refresh(self) -> Quota:
        """Ask TalentLMS (``GET ratelimit``: not counted against the quota) and follow its answer."""
        if self.refresher is None:
            raise RuntimeError("this budget has no refresher (the facade sets v1's GET ratelimit)")
        quota = self.refresher()
        self.learn(quota)
        return quota

    def learn(self, quota: Quota) -> bool:
        """Follow a report of TalentLMS's own (``GET ratelimit``); False when it described the short window.

        TalentLMS's count is the truth, minus the calls of ours still in flight (it may not have counted
        them yet), so the budget never thinks it has more than it has.
        """
        now = self._clock()
        if not self._describes_quota(quota.limit, quota.reset_at - now):
            return False
        with self._lock:
            self._limit = quota.limit
            self._reset_at = quota.reset_at
            self._remaining = max(0, quota.remaining - self._in_flight)
            self.last_learned_at = now
            remaining = self._remaining
        LMS_QUOTA_REMAINING.set(remaining)
        return True

    def observe_headers(self, headers: Mapping[str, str]) -> bool:
        """Follow ``X-RateLimit-Limit/Remaining/Reset`` of an answer when they describe the quota.

        Answers can arrive out of order, so within one hour the count only goes down; a later reset means
        a new hour, whose figure is taken as is (minus calls in flight).
        """
        limit = _int(headers.get("X-RateLimit-Limit"))
        remaining = _int(headers.get("X-RateLimit-Remaining"))
        if limit is None or remaining is None:
            return False
        now = self._clock()
        reset_at = _reset_epoch(headers.get("X-RateLimit-Reset"), now)
        if not self._describes_quota(limit, None if reset_at is None else reset_at - now):
            return False
        with self._lock:
            self._roll(now)
            reported = max(0, remaining - self._in_flight)
            same_hour = (
                reset_at is None
                or self._reset_at is None
                or abs(reset_at - self._reset_at) < PORTAL_SHORT_WINDOW_SECONDS
            )
            if same_hour and self._remaining is not None and self._limit == limit:
                self._remaining = min(self._remaining, reported)
            else:
                self._remaining = reported
            self._limit = limit
            if reset_at is not None:
                self._reset_at = reset_at
            self.last_learned_at = now
            current = self._remaining
        LMS_QUOTA_REMAINING.set(current)
        return True

    def on_rate_limited(self, call: str, headers: Mapping[str, str]) -> float:
        """A 429 came back: returns the seconds to wait, and makes sure nothing is sent before then.

        A wait longer than a short window (or headers that describe the quota) means the quota is spent:
        the budget refuses every call until the reset. The short limit is paused for the wait either way.
        """
        LMS_429.labels(call).inc()
        delay = retry_delay(headers)
        now = self._clock()
        limit = _int(headers.get("X-RateLimit-Limit"))
        reset_at = _reset_epoch(headers.get("X-RateLimit-Reset"), now)
        about_quota = delay > PORTAL_SHORT_WINDOW_SECONDS + 1 or (
            limit is not None and self._describes_quota(limit, None if reset_at is None else reset_at - now)
        )
        if about_quota:
            with self._lock:
                self._remaining = 0
                self._reset_at = now + delay
                if limit is not None and limit > PORTAL_SHORT_LIMIT:
                    self._limit = limit  # else the size stays as known (or unknown): spent is what matters
            LMS_QUOTA_REMAINING.set(0)
            log.warning("lms_quota_spent", call=call, retry_after_seconds=round(delay, 1))
        else:
            log.warning("lms_rate_limited", call=call, back_off_seconds=round(delay, 3))
        if self.limiter is not None:
            self.limiter.back_off(delay)  # Retry-After is honoured by every caller, whatever the cause
        return delay

    # --- internals ---------------------------------------------------------------------------------------

    def _roll(self, now: float) -> None:
        """Past the reset: a fresh hour (its start unknown until the next call or report). Lock held."""
        if self._reset_at is not None and now >= self._reset_at:
            self._remaining = self._limit  # None again when the size was never known
            self._reset_at = None

    def _describes_quota(self, limit: int, reset_in: float | None) -> bool:
        if reset_in is not None and reset_in > PORTAL_SHORT_WINDOW_SECONDS + 1:
            return True  # the short window never resets that far ahead
        if limit > PORTAL_SHORT_LIMIT:
            return True
        with self._lock:
            known = self._limit
        # A small limit resetting soon is the 5-s window, unless it is exactly the (unusual) quota we know.
        return known is not None and limit == known and known != PORTAL_SHORT_LIMIT


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _reset_epoch(value: str | None, now: float) -> float | None:
    """``X-RateLimit-Reset`` as epoch seconds (a small number is read as seconds from now)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if math.isnan(number) or math.isinf(number):
        return None
    return number if number > 1_000_000_000 else now + max(number, 0.0)


def retry_delay(headers: Mapping[str, str], now: float | None = None) -> float:
    """How long to wait after a 429: ``Retry-After`` (seconds or HTTP date), else ``X-RateLimit-Reset``."""
    now = time.time() if now is None else now
    raw = headers.get("Retry-After")
    if raw is not None:
        try:
            delay = float(raw)
        except ValueError:
            try:
                delay = parsedate_to_datetime(raw).timestamp() - now
            except (TypeError, ValueError):
                delay = math.nan
        if not math.isnan(delay):
            return min(max(delay, 0.0), MAX_BACKOFF_SECONDS)
    reset = _reset_epoch(headers.get("X-RateLimit-Reset"), now)
    if reset is not None and reset > now:
        return min(reset - now, MAX_BACKOFF_SECONDS)
    return DEFAULT_BACKOFF_SECONDS
