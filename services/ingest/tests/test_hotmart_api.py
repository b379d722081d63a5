"""The Hotmart API client against the fake: token cache and expiry, rate limit and 429s, pagination."""

from __future__ import annotations

import pytest

from hotmart_fake import Sale, Subscription
from ingest.adapters.hotmart_api import (
    SALES_HISTORY,
    SUBSCRIPTIONS,
    HotmartApi,
    HotmartApiError,
    RateLimiter,
)

from .conftest import api_settings


def sales(state, count: int, status: str = "APPROVED", start: int = 1_760_000_000_000) -> None:
    for n in range(count):
        state.add_sale(Sale(f"HP{n:010d}", 4711, f"b{n}@example.com", status=status, order_date=start + n))


def test_token_is_cached_until_it_expires_then_minted_again(fake_hotmart):
    server, state = fake_hotmart
    now = [0.0]
    api = HotmartApi(api_settings(server), clock=lambda: now[0])
    first = api.token()
    assert api.token() == first and state.calls["token"] == 1
    now[0] += state.token_lifetime  # past expires_in minus the margin
    assert api.token() != first and state.calls["token"] == 2


def test_a_token_the_server_expired_early_is_replaced_once(fake_hotmart):
    server, state = fake_hotmart
    api = HotmartApi(api_settings(server))
    api.token()
    state.tokens.clear()  # Hotmart revoked it
    assert api.get(SALES_HISTORY, {})["items"] == []
    assert state.calls["token"] == 2


def test_wrong_credentials_raise_a_clear_error(fake_hotmart):
    server, _state = fake_hotmart
    api = HotmartApi(api_settings(server, client_secret="nope"))
    with pytest.raises(HotmartApiError) as caught:
        api.get(SALES_HISTORY, {})
    assert caught.value.status == 401 and caught.value.code == "unauthorized_client"
    assert "nope" not in str(caught.value)


def test_pagination_reaches_the_end_and_the_default_filter_is_approved_and_complete(fake_hotmart):
    server, state = fake_hotmart
    sales(state, 1203)
    state.add_sale(Sale("HPREFUND", 4711, "r@example.com", status="REFUNDED"))
    api = HotmartApi(api_settings(server))
    items = list(api.paginate(SALES_HISTORY, {}))
    assert len(items) == 1203 and len({i["purchase"]["transaction"] for i in items}) == 1203
    assert state.calls["sales/history"] == 3  # 500 + 500 + 203
    refunds = list(api.paginate(SALES_HISTORY, {"transaction_status": "REFUNDED"}))
    assert [i["purchase"]["transaction"] for i in refunds] == ["HPREFUND"]


def test_page_size_above_the_maximum_is_silently_reduced(fake_hotmart):
    server, state = fake_hotmart
    sales(state, 600)
    api = HotmartApi(api_settings(server))
    pages = list(api.pages(SALES_HISTORY, {}, page_size=1000))
    assert [len(items) for items, _ in pages] == [500, 100]


def test_429_waits_for_the_reset_and_retries(fake_hotmart):
    server, state = fake_hotmart
    state.rate_limit, state.rate_window_seconds = 3, 0.5
    sales(state, 10)
    waits: list[float] = []
    import time as _time

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        _time.sleep(min(seconds, 0.6))

    # this client believes it may make 100 calls a minute: the server's 429s must still get it through
    api = HotmartApi(api_settings(server, calls_per_minute=100), sleep=sleep)
    items = list(api.paginate(SALES_HISTORY, {}, page_size=1))
    assert len(items) == 10
    assert state.throttled > 0 and api.throttled == state.throttled
    assert waits and all(w >= 1.0 for w in waits)  # RateLimit-Reset is whole seconds


def test_limiter_never_exceeds_its_budget_in_any_window():
    now = [0.0]
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(5, 60.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(23):
        limiter.acquire()
        calls.append(now[0])
        now[0] += 1.0
    for index, start in enumerate(calls):
        assert sum(1 for t in calls[index:] if t < start + 60.0) <= 5
    assert limiter.waited > 0


def test_subscriptions_default_to_recent_accessions_unless_asked(fake_hotmart):
    server, state = fake_hotmart
    old = Subscription("OLD1", 4711, "o@example.com", accession_date=1_600_000_000_000)
    state.add_subscription(old)
    api = HotmartApi(api_settings(server))
    assert list(api.paginate(SUBSCRIPTIONS, {})) == []
    found = list(api.paginate(SUBSCRIPTIONS, {"accession_date": 1_104_537_600_000}))
    assert [item["subscriber_code"] for item in found] == ["OLD1"]


def test_readyz_says_when_the_api_features_are_off(client):
    body = client.get("/readyz").json
    assert body["status"] == "ready"
    assert body["notes"]["hotmart_api"].startswith("off:")
