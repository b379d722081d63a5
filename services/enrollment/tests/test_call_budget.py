"""``CallBudget``: the short limit and the hourly quota, configured and learned, on a fake clock."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from enrollment.adapters.budget import CallBudget
from enrollment.adapters.rate_limit import RateLimiter
from enrollment.service_layer.ports import LmsRateLimited, Quota

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def budget_with(clock: Clock, *, quota: int | None = 3, limiter: RateLimiter | None = None) -> CallBudget:
    return CallBudget(limiter, hourly_quota=quota, quota_window_seconds=3600, clock=clock)


def take(budget: CallBudget, n: int = 1) -> None:
    for _ in range(n):
        with budget.call():
            pass


def test_configured_quota_is_spent_then_refused_without_sending_until_the_hour_ends() -> None:
    clock = Clock()
    budget = budget_with(clock)
    assert (budget.limit, budget.remaining, budget.reset_at) == (3, 3, None)
    take(budget)
    assert budget.reset_at == T0 + 3600  # the hour starts with the first call
    clock.now += 100
    take(budget, 2)
    assert budget.remaining == 0 and budget.calls_available_now == 0
    with pytest.raises(LmsRateLimited, match="quota") as limited:
        budget.reserve()
    assert limited.value.retry_after == pytest.approx(3500)
    assert budget.seconds_until_quota() == pytest.approx(3500)
    assert REGISTRY.get_sample_value("coursebridge_lms_quota_remaining") == 0
    clock.now = T0 + 3600
    assert budget.remaining == 3 and budget.reset_at is None
    take(budget)
    assert budget.remaining == 2


def test_learns_from_get_ratelimit_minus_calls_in_flight() -> None:
    clock = Clock()
    budget = budget_with(clock, quota=2000)
    budget.reserve()  # one call in flight: TalentLMS may not have counted it yet
    assert budget.learn(Quota(limit=10_000, remaining=7_000, reset_at=T0 + 1200)) is True
    assert (budget.limit, budget.remaining, budget.reset_at) == (10_000, 6_999, T0 + 1200)
    budget.release()
    assert budget.last_learned_at == T0


def test_a_report_of_the_5_second_window_is_not_the_quota() -> None:
    clock = Clock()
    budget = budget_with(clock, quota=2000)
    assert budget.learn(Quota(limit=200, remaining=150, reset_at=T0 + 4)) is False
    assert budget.observe_headers({"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "3"}) is False
    assert (budget.limit, budget.remaining) == (2000, 2000)


def test_headers_of_the_quota_within_an_hour_only_go_down() -> None:
    clock = Clock()
    budget = budget_with(clock, quota=2000)
    reset = str(int(T0 + 1800))
    assert budget.observe_headers(
        {"X-RateLimit-Limit": "2000", "X-RateLimit-Remaining": "500", "X-RateLimit-Reset": reset}
    )
    assert (budget.remaining, budget.reset_at) == (500, T0 + 1800)
    # a late answer of an earlier call, carrying a higher figure, does not raise it back
    budget.observe_headers(
        {"X-RateLimit-Limit": "2000", "X-RateLimit-Remaining": "510", "X-RateLimit-Reset": reset}
    )
    assert budget.remaining == 500
    # a new hour (a later reset) is taken as reported
    later = str(int(T0 + 5400))
    budget.observe_headers(
        {"X-RateLimit-Limit": "2000", "X-RateLimit-Remaining": "1990", "X-RateLimit-Reset": later}
    )
    assert (budget.remaining, budget.reset_at) == (1990, T0 + 5400)


def test_quota_headers_are_recognised_without_a_reset_by_their_size() -> None:
    clock = Clock()
    budget = budget_with(clock, quota=None)
    assert budget.observe_headers({"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "42"})
    assert (budget.limit, budget.remaining) == (10_000, 42)


def test_without_a_configured_quota_nothing_is_refused_until_learned() -> None:
    clock = Clock()
    budget = budget_with(clock, quota=None)
    take(budget, 50)
    assert budget.remaining is None
    budget.learn(Quota(limit=100, remaining=0, reset_at=T0 + 60))
    with pytest.raises(LmsRateLimited):
        budget.reserve()


def test_a_429_about_the_quota_stops_everything_until_its_reset() -> None:
    clock = Clock()
    limiter = RateLimiter(100, 5.0, max_wait=0.0, clock=lambda: clock.now - T0)
    budget = budget_with(clock, quota=2000, limiter=limiter)
    before = REGISTRY.get_sample_value("coursebridge_lms_429_total", {"call": "enroll"}) or 0.0
    delay = budget.on_rate_limited("enroll", {"Retry-After": "900"})
    assert delay == 900
    assert REGISTRY.get_sample_value("coursebridge_lms_429_total", {"call": "enroll"}) == before + 1
    assert budget.remaining == 0
    with pytest.raises(LmsRateLimited) as limited:
        budget.reserve()
    assert limited.value.retry_after == pytest.approx(900)
    clock.now += 901
    assert budget.remaining == 2000  # the configured size comes back


def test_a_429_of_the_short_window_pauses_the_limiter_only() -> None:
    clock = Clock()
    limiter = RateLimiter(100, 5.0, max_wait=0.0, clock=lambda: clock.now - T0)
    budget = budget_with(clock, quota=2000, limiter=limiter)
    budget.on_rate_limited("enroll", {"Retry-After": "3", "X-RateLimit-Limit": "200"})
    assert budget.remaining == 2000
    assert limiter.paused_for() == pytest.approx(3)
    with pytest.raises(LmsRateLimited) as limited:  # max_wait 0: refused rather than waiting
        budget.reserve()
    assert limited.value.retry_after == pytest.approx(3)
    assert budget.remaining == 2000  # a call refused by the limiter gives its quota back


def test_calls_available_now_is_the_smaller_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(5, 5.0, max_wait=0.0, clock=lambda: clock.now - T0)
    budget = budget_with(clock, quota=3, limiter=limiter)
    assert budget.calls_available_now == 3
    budget.learn(Quota(limit=100, remaining=100, reset_at=T0 + 600))
    assert budget.calls_available_now == 5
    take(budget, 2)
    assert budget.calls_available_now == 3


def test_refresh_asks_the_refresher_and_follows_it() -> None:
    clock = Clock()
    budget = budget_with(clock, quota=2000)
    with pytest.raises(RuntimeError):
        budget.refresh()
    budget.refresher = lambda: Quota(limit=2000, remaining=12, reset_at=T0 + 30)
    assert budget.refresh().remaining == 12
    assert budget.remaining == 12


def test_from_env() -> None:
    budget = CallBudget.from_env(
        {
            "TALENTLMS_HOURLY_QUOTA": "10000",
            "TALENTLMS_QUOTA_WINDOW_SECONDS": "60",
            "TALENTLMS_RATE_LIMIT_CALLS": "95",
        }
    )
    assert (budget.limit, budget.quota_window_seconds) == (10_000, 60)
    assert budget.limiter is not None and budget.limiter.calls == 95
    assert CallBudget.from_env({}).limit == 2000
    with pytest.raises(ValueError):
        CallBudget(hourly_quota=0)
