"""Client-side rate limiter for the TalentLMS API: at most N calls in any W seconds, shared by threads.

TalentLMS allows 200 calls per 5 seconds per portal (plus an hourly quota by plan). Going over costs a 429
and a pause. The limiter keeps this process under the limit with headroom: the default budget is 190 calls
per 5 s (``DEFAULT_CALLS`` / ``DEFAULT_WINDOW_SECONDS``), configurable with

- ``TALENTLMS_RATE_LIMIT_CALLS``            calls allowed per window for THIS process (default 190);
- ``TALENTLMS_RATE_LIMIT_WINDOW_SECONDS``   the window in seconds (default 5);
- ``TALENTLMS_RATE_LIMIT_MAX_WAIT_SECONDS`` how long a caller may block before giving up with
  ``LmsRateLimited`` (default 30), so the caller can do something else instead of holding a worker.

Sliding window, two ways to take a slot:

- ``slot()`` (or ``reserve()`` … ``release()``), what ``TalentLmsClient`` uses: the slot is held while the
  request is in flight and for W seconds after it ENDED. TalentLMS counts a call somewhere between our
  send and its answer, so two calls that reuse one slot reach it more than W apart, and any W-second
  window (the portal's fixed windows, whatever their alignment, or a sliding one) sees at most N calls.
  Timestamping at the send instead is not enough: a burst released at t0 + W can land in a portal window
  that opened when the first call of the previous burst ARRIVED, after t0 (the benchmark met 429s).
  The price is the request latency added to each slot's period (about 1 % at 5 s windows).
- ``acquire()``: the slot is timestamped when granted (for callers that cannot report the end).

Honest limitation: the budget is per process. With several replicas (or worker processes) each has its own
limiter and they do not coordinate, so the configured budget must be the portal's budget divided by the
number of processes calling TalentLMS (the Helm chart sets ``TALENTLMS_RATE_LIMIT_CALLS`` from the
replica count). A 429 that gets through anyway makes ``back_off()`` pause this process's callers, and the
message is redelivered later: no enrolment is lost, it only drains a little slower.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from enrollment.service_layer.ports import LmsRateLimited

# TalentLMS's 200 / 5 s minus 5 % headroom: for another client of the same portal (an admin script, a
# connector) and for a replica count that changed before the budgets did.
DEFAULT_CALLS = 190
DEFAULT_WINDOW_SECONDS = 5.0
DEFAULT_MAX_WAIT_SECONDS = 30.0


class RateLimiter:
    """At most ``calls`` calls in any ``window_seconds``; thread-safe; ``back_off`` pauses everyone.

    ``clock`` and ``sleep`` are injectable (monotonic seconds), so tests can drive it with a fake clock.
    """

    def __init__(
        self,
        calls: int = DEFAULT_CALLS,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        *,
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls < 1:
            raise ValueError("calls must be >= 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        if max_wait < 0:
            raise ValueError("max_wait must be >= 0")
        self.calls = calls
        self.window_seconds = window_seconds
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition(threading.Lock())
        self._recent: deque[float] = deque()  # when recent calls ended (slot) or were granted (acquire)
        self._in_flight = 0
        self._paused_until = -math.inf

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: object) -> RateLimiter:
        """Budget from ``TALENTLMS_RATE_LIMIT_CALLS`` / ``_WINDOW_SECONDS`` / ``_MAX_WAIT_SECONDS``."""
        env = os.environ if environ is None else environ
        return cls(
            int(env.get("TALENTLMS_RATE_LIMIT_CALLS") or DEFAULT_CALLS),
            float(env.get("TALENTLMS_RATE_LIMIT_WINDOW_SECONDS") or DEFAULT_WINDOW_SECONDS),
            max_wait=float(env.get("TALENTLMS_RATE_LIMIT_MAX_WAIT_SECONDS") or DEFAULT_MAX_WAIT_SECONDS),
            **kwargs,  # type: ignore[arg-type]
        )

    # --- taking a slot ------------------------------------------------------------------------------------

    def acquire(self, max_wait: float | None = None) -> float:
        """Block until a call may go out, counting it from now; returns the seconds waited.

        Raises ``LmsRateLimited`` at once (without sleeping) when the wait would exceed ``max_wait``
        (default: the limiter's own), with ``retry_after`` the wait it would have needed.
        """
        return self._take(max_wait, in_flight=False)

    def reserve(self, max_wait: float | None = None) -> float:
        """Like ``acquire``, but the slot stays taken until ``release()`` and W seconds after it."""
        return self._take(max_wait, in_flight=True)

    def release(self) -> None:
        """The reserved call has ended (answered, failed or timed out): its W seconds start now."""
        with self._cond:
            if self._in_flight <= 0:
                raise RuntimeError("release() without reserve()")
            self._in_flight -= 1
            self._recent.append(self._clock())
            self._cond.notify()

    @contextmanager
    def slot(self, max_wait: float | None = None) -> Iterator[float]:
        """``with limiter.slot(): send()``: ``reserve()`` on entry, ``release()`` on exit."""
        waited = self.reserve(max_wait)
        try:
            yield waited
        finally:
            self.release()

    def _take(self, max_wait: float | None, *, in_flight: bool) -> float:
        budget = self.max_wait if max_wait is None else max_wait
        start = self._clock()
        deadline = start + budget
        with self._cond:
            while True:
                now = self._clock()
                # One expression for "expired" and for the wait, so a wait is never rounded down to 0.
                while self._recent and self._recent[0] + self.window_seconds <= now:
                    self._recent.popleft()
                wait: float | None
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif len(self._recent) + self._in_flight < self.calls:
                    if in_flight:
                        self._in_flight += 1
                    else:
                        self._recent.append(now)
                    return now - start
                elif self._recent:
                    wait = self._recent[0] + self.window_seconds - now
                else:
                    wait = None  # every slot is in flight: until one ends, then W more at least
                if (now + wait if wait is not None else now + self.window_seconds) > deadline:
                    raise LmsRateLimited(
                        "TalentLMS call budget exhausted: the next slot is "
                        + (f"{wait:.1f}s away" if wait is not None else "held by calls in flight")
                        + f" (more than the {budget:g}s this call may wait)",
                        retry_after=wait if wait is not None else self.window_seconds,
                    )
                if wait is None:
                    self._cond.wait(timeout=deadline - now)
                else:
                    self._cond.release()
                    try:
                        self._sleep(wait)
                    finally:
                        self._cond.acquire()

    # --- pausing and reading ------------------------------------------------------------------------------

    def back_off(self, seconds: float) -> None:
        """Pause every caller for ``seconds`` from now (after a 429); never shortens a longer pause."""
        if seconds <= 0:
            return
        with self._cond:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def paused_for(self) -> float:
        """Seconds left of the current back-off (0 when not paused)."""
        with self._cond:
            return max(0.0, self._paused_until - self._clock())

    def available(self) -> int:
        """Calls that could go out right now without waiting (0 while paused)."""
        with self._cond:
            now = self._clock()
            if now < self._paused_until:
                return 0
            in_window = sum(1 for t in self._recent if t + self.window_seconds > now)
            return max(0, self.calls - in_window - self._in_flight)
