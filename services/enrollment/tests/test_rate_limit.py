"""The client-side limiter: never more than N acquisitions in any W seconds; back-off pauses everyone."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrollment.adapters.rate_limit import DEFAULT_CALLS, DEFAULT_WINDOW_SECONDS, RateLimiter
from enrollment.service_layer.ports import LmsRateLimited


class FakeClock:
    """Monotonic seconds that only move when someone sleeps (or the test advances them)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def limiter_with(clock: FakeClock, calls: int, window: float, max_wait: float = 1e9) -> RateLimiter:
    return RateLimiter(calls, window, max_wait=max_wait, clock=clock, sleep=clock.sleep)


def assert_at_most(times: list[float], calls: int, window: float) -> None:
    """No ``calls + 1`` acquisitions inside any half-open interval of ``window`` seconds."""
    times = sorted(times)
    for first, later in zip(times, times[calls:], strict=False):
        assert later - first >= window - 1e-9, (first, later)


def test_defaults_leave_headroom_under_talentlms_limit() -> None:
    limiter = RateLimiter()
    assert (limiter.calls, limiter.window_seconds) == (DEFAULT_CALLS, DEFAULT_WINDOW_SECONDS) == (190, 5.0)


def test_from_env() -> None:
    limiter = RateLimiter.from_env(
        {
            "TALENTLMS_RATE_LIMIT_CALLS": "95",
            "TALENTLMS_RATE_LIMIT_WINDOW_SECONDS": "2.5",
            "TALENTLMS_RATE_LIMIT_MAX_WAIT_SECONDS": "12",
        }
    )
    assert (limiter.calls, limiter.window_seconds, limiter.max_wait) == (95, 2.5, 12.0)
    assert RateLimiter.from_env({}).calls == 190


def test_invalid_settings() -> None:
    for args in ((0, 1.0), (5, 0.0)):
        with pytest.raises(ValueError):
            RateLimiter(*args)


def test_the_first_n_go_at_once_then_one_per_expiry() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, calls=5, window=1.0)
    times = []
    for _ in range(23):
        limiter.acquire()
        times.append(clock())
    assert times[:5] == [1000.0] * 5
    assert_at_most(times, 5, 1.0)
    assert times[-1] == pytest.approx(1004.0)  # tight: 23 calls at 5 / s need exactly 4 more windows


@settings(max_examples=150, deadline=None)
@given(
    calls=st.integers(1, 8),
    window=st.floats(0.1, 10.0),
    gaps=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=60),
)
def test_never_more_than_n_in_any_window(calls: int, window: float, gaps: list[float]) -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, calls, window)
    times = []
    for gap in gaps:
        clock.now += gap
        waited = limiter.acquire()
        times.append(clock())
        assert waited >= 0
    assert_at_most(times, calls, window)


@settings(max_examples=150, deadline=None)
@given(
    calls=st.integers(2, 6),
    window=st.floats(0.1, 5.0),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("start"), st.floats(0.0, 1.0)),
            st.tuples(st.just("advance"), st.floats(0.0, 2.0)),
            st.tuples(st.just("finish"), st.integers(0, 10)),
        ),
        max_size=80,
    ),
)
def test_slots_keep_arrivals_under_n_whatever_the_latency(
    calls: int, window: float, ops: list[tuple[str, float]]
) -> None:
    """Calls in flight at once, each reaching the portal at any instant between its send and its end."""
    clock = FakeClock()
    limiter = limiter_with(clock, calls, window)
    open_calls: list[tuple[float, float]] = []  # (sent at, where between send and end it arrives)
    arrivals: list[float] = []

    def finish(index: int) -> None:
        sent, fraction = open_calls.pop(index)
        limiter.release()
        arrivals.append(sent + fraction * (clock() - sent))

    for op, value in ops:
        if op == "start":
            if len(open_calls) == calls - 1:  # one thread: never wait on a slot only a release could free
                finish(0)
            limiter.reserve()
            open_calls.append((clock(), value))
        elif op == "advance":
            clock.now += value
        elif open_calls:
            finish(int(value) % len(open_calls))
    while open_calls:
        clock.now += 0.01
        finish(0)
    assert_at_most(arrivals, calls, window)


def test_a_slot_is_held_until_window_after_its_call_ended() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, calls=1, window=1.0)
    with limiter.slot():
        assert limiter.available() == 0
        clock.now += 0.7  # a slow call
    assert limiter.available() == 0
    assert limiter.acquire() == pytest.approx(1.0)  # counted from the end of the call, not its start
    with pytest.raises(RuntimeError):
        limiter.release()


def test_all_slots_in_flight_gives_up_when_max_wait_is_below_one_window() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, calls=1, window=5.0, max_wait=2.0)
    limiter.reserve()
    with pytest.raises(LmsRateLimited, match="in flight"):
        limiter.reserve()
    limiter.release()


def test_a_release_wakes_a_thread_waiting_for_a_slot_in_flight() -> None:
    limiter = RateLimiter(1, 0.05, max_wait=5.0)
    limiter.reserve()
    threading.Timer(0.05, limiter.release).start()
    started = time.monotonic()
    limiter.reserve()  # waits for the release, then for the window after it
    assert 0.09 <= time.monotonic() - started < 3.0
    limiter.release()


def test_gives_up_without_sleeping_when_the_wait_exceeds_max_wait() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, calls=2, window=10.0, max_wait=3.0)
    limiter.acquire()
    limiter.acquire()
    assert limiter.available() == 0
    with pytest.raises(LmsRateLimited, match="budget") as limited:
        limiter.acquire()
    assert limited.value.retry_after == pytest.approx(10.0)  # when the oldest slot frees
    assert clock.sleeps == []
    clock.now += 8.0
    assert limiter.acquire() == pytest.approx(2.0)  # 2 s left: within the 3 s max wait
    assert limiter.acquire(max_wait=0.0) == 0.0  # a free slot needs no wait at all
    with pytest.raises(LmsRateLimited):
        limiter.acquire(max_wait=0.0)


def test_back_off_pauses_every_caller() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, calls=100, window=1.0)
    limiter.back_off(3.0)
    limiter.back_off(1.0)  # a shorter pause never shortens the current one
    assert limiter.paused_for() == pytest.approx(3.0)
    assert limiter.available() == 0
    assert limiter.acquire() == pytest.approx(3.0)
    assert limiter.paused_for() == 0.0
    assert limiter.acquire() == 0.0


def test_back_off_longer_than_max_wait_makes_acquire_transient() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, calls=100, window=1.0, max_wait=2.0)
    limiter.back_off(60.0)
    with pytest.raises(LmsRateLimited) as limited:
        limiter.acquire()
    assert limited.value.retry_after == pytest.approx(60.0)
    assert clock.sleeps == []


def test_threads_share_one_budget() -> None:
    limiter = RateLimiter(10, 0.2, max_wait=5.0)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stamps) == 40
    # 40 acquisitions at 10 / 0.2 s: the last one no earlier than three windows after the first.
    assert 0.55 <= time.monotonic() - started < 5.0
    assert_at_most(stamps, 10, 0.2 - 0.05)  # stamps are taken just after acquire(): a little slack
