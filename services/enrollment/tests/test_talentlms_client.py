"""``TalentLmsClient`` (API v1) against the fake TalentLMS served on a loopback port (``fake_lms``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from enrollment.adapters.budget import CallBudget, retry_delay
from enrollment.adapters.rate_limit import RateLimiter
from enrollment.adapters.talentlms import TalentLmsClient, TalentLmsError
from enrollment.service_layer.ports import (
    LmsAuthRejected,
    LmsCourse,
    LmsCourseMissing,
    LmsInDoubt,
    LmsPermanentError,
    LmsRateLimited,
    LmsUnavailable,
    LmsUser,
    LmsUserMissing,
    NewUser,
    Quota,
)

EMAIL = "ana.souza+promo@example.com"


def sign_up(client: TalentLmsClient, email: str = EMAIL, login: str = "ana.souza") -> LmsUser:
    return client.sign_up(
        NewUser(email=email, first_name="Ana", last_name="Souza", login=login, password="S3cret!x")
    )


def calls(call: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("coursebridge_lms_calls_total", {"call": call, "outcome": outcome}) or 0.0
    )


def test_list_courses(lms_client: TalentLmsClient) -> None:
    assert lms_client.list_courses() == [
        LmsCourse("7", "Academy: Foundations"),
        LmsCourse("9", "Academy: Advanced Techniques"),
        LmsCourse("11", "Academy: Masterclass (premium plan)"),
        LmsCourse("12", "Spreadsheet Mastery"),
    ]


def test_sign_up_then_find_by_email_with_plus_and_at(lms_client: TalentLmsClient, fake_lms: Any) -> None:
    user = sign_up(lms_client)
    assert user == LmsUser(id=user.id, email=EMAIL, login="ana.souza", active=True, courses=frozenset())
    assert user.id.isdigit()
    assert lms_client.find_user_by_email(EMAIL) == user
    assert lms_client.find_user_by_id(user.id) == user
    assert lms_client.find_user_by_email("ana.souza@example.com") is None  # '+promo' is part of the address
    assert lms_client.find_user_by_id("999") is None
    assert fake_lms.state.snapshot()["calls"] == {"usersignup": 1, "users": 4}


def test_sign_up_of_an_existing_email_returns_that_user(lms_client: TalentLmsClient, fake_lms: Any) -> None:
    first = sign_up(lms_client)
    before = calls("sign_up", "already")
    again = sign_up(lms_client, login="someone.else")
    assert again == first
    assert calls("sign_up", "already") == before + 1
    snapshot = fake_lms.state.snapshot()
    assert len(snapshot["users"]) == 1
    assert snapshot["calls"] == {"usersignup": 2, "users": 1}  # the collision costs one lookup


def test_sign_up_with_a_taken_login_retries_with_a_suffix(lms_client: TalentLmsClient, fake_lms: Any) -> None:
    fake_lms.add_user("bruno@example.com", login="ana.souza")
    user = sign_up(lms_client)
    assert user.login.startswith("ana.souza-") and user.email == EMAIL
    assert len(fake_lms.state.snapshot()["users"]) == 2


def test_enroll_twice_is_true_then_false(lms_client: TalentLmsClient, fake_lms: Any) -> None:
    user = sign_up(lms_client)
    assert lms_client.enroll(user.id, "7") is True
    assert lms_client.enroll(user.id, "7") is False
    assert lms_client.enroll(user.id, "9") is True
    assert fake_lms.enrollments() == {(user.id, "7"), (user.id, "9")}
    assert fake_lms.state.snapshot()["enrolled_total"] == 2


def test_unenroll_twice_is_true_then_false(lms_client: TalentLmsClient, fake_lms: Any) -> None:
    user = sign_up(lms_client)
    lms_client.enroll(user.id, "7")
    assert lms_client.unenroll(user.id, "7") is True
    assert lms_client.unenroll(user.id, "7") is False
    assert lms_client.unenroll(user.id, "9") is False  # never enrolled: also success
    assert fake_lms.enrollments() == set()


def test_set_user_active(lms_client: TalentLmsClient) -> None:
    user = sign_up(lms_client)
    lms_client.set_user_active(user.id, False)
    assert lms_client.find_user_by_id(user.id) == LmsUser(
        user.id, EMAIL, "ana.souza", active=False, courses=frozenset()
    )
    lms_client.set_user_active(user.id, True)
    assert lms_client.find_user_by_email(EMAIL).active is True  # type: ignore[union-attr]
    with pytest.raises(LmsPermanentError, match=r"^The requested user does not exist$"):
        lms_client.set_user_active("999", False)


def test_unknown_course_or_user_is_missing_with_talentlms_message(lms_client: TalentLmsClient) -> None:
    user = sign_up(lms_client)
    before = calls("enroll", "course_missing")
    with pytest.raises(LmsCourseMissing) as refused:
        lms_client.enroll(user.id, "404")
    assert isinstance(refused.value, TalentLmsError)
    assert refused.value.reason == "The requested course does not exist"
    assert refused.value.call == "enroll" and refused.value.status == 404
    assert calls("enroll", "course_missing") == before + 1
    with pytest.raises(LmsUserMissing, match=r"^The requested user does not exist$"):
        lms_client.enroll("999", "7")
    with pytest.raises(LmsCourseMissing, match=r"^The requested course does not exist$"):
        lms_client.unenroll(user.id, "404")


def test_read_back_user_courses_and_course_users(lms_client: TalentLmsClient, fake_lms: Any) -> None:
    ana, bia = sign_up(lms_client), sign_up(lms_client, email="bia@example.com", login="bia")
    lms_client.enroll(ana.id, "7")
    lms_client.enroll(ana.id, "9")
    lms_client.enroll(bia.id, "9")
    assert lms_client.user_courses(ana.id) == {"7", "9"}
    assert lms_client.user_courses(bia.id) == {"9"}
    assert lms_client.course_users("9") == {ana.id, bia.id}
    assert lms_client.course_users("11") == set()
    requests.delete(f"{fake_lms.url}/_fake/users/{bia.id}", timeout=5).raise_for_status()
    with pytest.raises(LmsUserMissing):
        lms_client.user_courses(bia.id)
    assert lms_client.course_users("9") == {ana.id}
    requests.delete(f"{fake_lms.url}/_fake/courses/9", timeout=5).raise_for_status()
    with pytest.raises(LmsCourseMissing):
        lms_client.course_users("9")
    with pytest.raises(LmsCourseMissing):
        lms_client.enroll(ana.id, "9")


def test_course_link(lms_client: TalentLmsClient, fake_lms: Any) -> None:
    user = sign_up(lms_client)
    lms_client.enroll(user.id, "12")
    link = lms_client.course_link(user.id, "12")
    assert link.startswith(fake_lms.url) and "course_id:12" in link
    with pytest.raises(TalentLmsError, match="not enrolled"):
        lms_client.course_link(user.id, "7")
    with pytest.raises(LmsUserMissing):
        lms_client.course_link("999", "12")


def test_wrong_api_key_is_auth_rejected_never_permanent(fake_lms: Any) -> None:
    client = fake_lms.client(api_key="wrong-talentlms-key-123")
    with pytest.raises(LmsAuthRejected) as refused:
        client.enroll("1", "7")
    assert not isinstance(refused.value, LmsPermanentError)
    assert refused.value.status == 401 and refused.value.reason == "TalentLMS rejected the API key (HTTP 401)"
    assert "wrong-talentlms-key-123" not in str(refused.value)
    assert fake_lms.state.snapshot()["rejected"] == {"unauthorized": 1}


def test_a_key_rejected_for_a_while_then_accepted(lms_client: TalentLmsClient, fake_lms: Any) -> None:
    fake_lms.state.reject_auth_for(0.3)
    with pytest.raises(LmsAuthRejected):
        lms_client.list_courses()
    time.sleep(0.35)
    assert len(lms_client.list_courses()) == 4


def test_429_storm_is_rate_limited_and_nothing_more_is_sent(fake_lms: Any) -> None:
    limiter = RateLimiter(1000, 1.0, max_wait=0.0)
    client = fake_lms.client(limiter=limiter)
    user_id = fake_lms.add_user("ana@example.com")
    fake_lms.set_failure("429", seconds=7)
    before = calls("enroll", "rate_limited")
    with pytest.raises(LmsRateLimited, match="rate limit") as limited:
        client.enroll(user_id, "7")
    assert not isinstance(limited.value, LmsPermanentError)
    assert limited.value.retry_after == 7
    assert calls("enroll", "rate_limited") == before + 1
    assert 6 < limiter.paused_for() <= 7  # Retry-After honoured, for every caller of this limiter
    with pytest.raises(LmsRateLimited) as again:  # not even sent
        client.enroll(user_id, "7")
    assert 6 < again.value.retry_after <= 7
    assert fake_lms.state.snapshot()["calls"] == {"addusertocourse": 1}
    assert fake_lms.enrollments() == set()


def test_headers_that_say_the_window_is_spent_stop_the_next_call(
    fake_lms_factory: Callable[..., Any],
) -> None:
    # A 30-s window cannot be TalentLMS's 5-s one: its X-RateLimit-* are read as the quota, so the third
    # call is refused without being sent (no 429 at all).
    fake = fake_lms_factory(rate_limit=2, rate_window_seconds=30)
    client = fake.client(limiter=RateLimiter(1000, 1.0, max_wait=0.0))
    client.list_courses()
    client.list_courses()
    with pytest.raises(LmsRateLimited) as limited:
        client.list_courses()
    assert 20 < limited.value.retry_after <= 31
    assert client.quota().remaining == 0  # ratelimit is not counted: it skips the budget
    snapshot = fake.state.snapshot()
    assert snapshot["calls"] == {"courses": 2, "ratelimit": 1} and snapshot["responses_429"] == 0


def test_a_real_429_uses_retry_after(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(rate_limit=2, rate_window_seconds=30)
    limiter = RateLimiter(1000, 1.0, max_wait=0.0)
    client = fake.client(limiter=limiter)
    for _ in range(2):  # spent behind the client's back: it has not seen the headers
        requests.get(f"{fake.base_url}/courses", auth=(fake.api_key, ""), timeout=5)
    with pytest.raises(LmsRateLimited) as limited:
        client.list_courses()
    assert 20 < limited.value.retry_after <= 31 and 20 < limiter.paused_for() <= 31
    with pytest.raises(LmsRateLimited):
        client.list_courses()
    assert fake.state.snapshot()["responses_429"] == 1  # one 429 at most


def test_without_a_limiter_429_is_still_rate_limited(fake_lms: Any) -> None:
    fake_lms.set_failure("429", count=1)
    client = fake_lms.client()
    with pytest.raises(LmsRateLimited):
        client.list_courses()
    assert len(client.list_courses()) == 4


def test_server_error_is_in_doubt(lms_client: TalentLmsClient, fake_lms: Any) -> None:
    fake_lms.set_failure("500", count=1)
    with pytest.raises(LmsInDoubt, match="HTTP 500"):
        lms_client.find_user_by_email(EMAIL)
    assert lms_client.find_user_by_email(EMAIL) is None


def test_500_after_acting_is_in_doubt_and_reading_back_tells(
    lms_client: TalentLmsClient, fake_lms: Any
) -> None:
    user_id = fake_lms.add_user("ana@example.com")
    fake_lms.set_failure("acted_500", count=1, endpoint="addusertocourse")
    with pytest.raises(LmsInDoubt):
        lms_client.enroll(user_id, "7")
    assert lms_client.user_courses(user_id) == {"7"}  # it did happen
    assert lms_client.enroll(user_id, "7") is False


def test_timeout_is_in_doubt_and_the_retry_is_safe(fake_lms: Any) -> None:
    client = fake_lms.client(timeout=0.3)
    user_id = fake_lms.add_user("ana@example.com")
    fake_lms.set_failure("slow", seconds=1.0, count=1)
    with pytest.raises(LmsInDoubt, match="did not answer"):
        client.enroll(user_id, "7")
    # TalentLMS did enrol before answering late; the redelivered message meets "already enrolled".
    assert client.enroll(user_id, "7") is False
    assert fake_lms.enrollments() == {(user_id, "7")}


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = TalentLmsClient(f"http://127.0.0.1:{port}/api/v1", "key-abcdef", timeout=1.0)
    with pytest.raises(LmsUnavailable, match="could not reach"):
        client.enroll("1", "7")


def test_connection_reset_after_sending_is_in_doubt() -> None:
    """A server that reads the whole request, then drops the connection without answering."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received: list[bytes] = []

    def accept_and_drop() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(2)
            received.append(conn.recv(65536))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    thread = threading.Thread(target=accept_and_drop, daemon=True)
    thread.start()
    client = TalentLmsClient(f"http://127.0.0.1:{server.getsockname()[1]}/api/v1", "key-abcdef", timeout=2.0)
    try:
        with pytest.raises(LmsInDoubt):
            client.enroll("1", "7")
    finally:
        thread.join(timeout=5)
        server.close()
    assert received and received[0].startswith(b"POST /api/v1/addusertocourse")


def test_no_email_or_api_key_in_errors_or_logs(fake_lms: Any) -> None:
    client = fake_lms.client(timeout=0.2)
    fake_lms.set_failure("500", count=1)
    with capture_logs() as logs, pytest.raises(LmsInDoubt) as failure:
        client.find_user_by_email(EMAIL)
    fake_lms.set_failure("slow", seconds=0.6, count=1)
    with capture_logs() as more_logs, pytest.raises(LmsInDoubt) as timeout:
        client.find_user_by_email(EMAIL)
    for exc in (failure.value, timeout.value):
        text = f"{exc!s} {exc!r} {exc.__cause__!r} {exc.__context__!r}"
        assert "@" not in text and "%40" not in text and "ana.souza" not in text
        assert fake_lms.api_key not in text
    logged = repr(logs + more_logs)
    assert logs and "ana.souza" not in logged and fake_lms.api_key not in logged


def test_client_limiter_keeps_under_the_portal_limit(fake_lms_factory: Callable[..., Any]) -> None:
    # The same budget as the portal, no headroom: a slot is held until W after its call ENDED, so even at
    # exactly the portal's limit no window of the portal sees more than N calls.
    fake = fake_lms_factory(rate_limit=10, rate_window_seconds=0.5)
    client = fake.client(limiter=RateLimiter(10, 0.5, max_wait=5.0))
    user_ids = [fake.add_user(f"student{i}@example.com") for i in range(30)]
    errors: list[Exception] = []

    def enroll(chunk: list[str]) -> None:
        for user_id in chunk:
            try:
                client.enroll(user_id, "12")
            except Exception as exc:  # collected for the assertion below
                errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=enroll, args=(user_ids[i::6],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert errors == []
    snapshot = fake.state.snapshot()
    assert snapshot["rejected"] == {}
    assert snapshot["enrolled_total"] == 30 and len(snapshot["enrollments"]) == 30
    assert 0.95 < elapsed < 10  # 30 calls at 10 / 0.5 s: at least two more windows after the first


def test_quota_of_a_portal_without_an_hourly_quota(lms_client: TalentLmsClient) -> None:
    lms_client.list_courses()
    quota = lms_client.quota()
    assert isinstance(quota, Quota)
    assert (quota.limit, quota.remaining) == (200, 199)  # the fake then reports the 5-s window
    assert time.time() < quota.reset_at <= time.time() + 6
    assert REGISTRY.get_sample_value("coursebridge_lms_rate_limit_remaining") == 199
    assert lms_client.quota().remaining == 199  # not counted
    assert lms_client.budget.remaining is None  # a 5-s report is not mistaken for the hourly quota


def test_quota_is_learned_by_the_budget(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(hourly_quota=50, quota_window_seconds=120)
    budget = CallBudget(RateLimiter(1000, 1.0, max_wait=0.0), hourly_quota=2000)
    client = fake.client(budget=budget)
    client.list_courses()
    client.list_courses()
    quota = client.quota()
    assert (quota.limit, quota.remaining) == (50, 48)
    assert (budget.limit, budget.remaining) == (50, 48)
    assert budget.reset_at == quota.reset_at and time.time() + 100 < quota.reset_at <= time.time() + 121
    assert REGISTRY.get_sample_value("coursebridge_lms_quota_remaining") == 48


def test_metrics_count_outcomes_and_latency(lms_client: TalentLmsClient) -> None:
    user = sign_up(lms_client, email="metrics@example.com", login="metrics")
    ok, already = calls("enroll", "ok"), calls("enroll", "already")
    seconds = REGISTRY.get_sample_value("coursebridge_lms_call_seconds_count", {"call": "enroll"}) or 0.0
    lms_client.enroll(user.id, "11")
    lms_client.enroll(user.id, "11")
    assert (calls("enroll", "ok"), calls("enroll", "already")) == (ok + 1, already + 1)
    assert REGISTRY.get_sample_value("coursebridge_lms_call_seconds_count", {"call": "enroll"}) == seconds + 2


def test_from_env() -> None:
    client = TalentLmsClient.from_env(
        {
            "TALENTLMS_BASE_URL": "https://acme.talentlms.com/api/v1/",
            "TALENTLMS_API_KEY": "key-from-env",
            "TALENTLMS_RATE_LIMIT_CALLS": "95",
            "TALENTLMS_TIMEOUT_SECONDS": "4",
        }
    )
    assert client.base_url == "https://acme.talentlms.com/api/v1"
    assert client.limiter is not None and (client.limiter.calls, client.limiter.window_seconds) == (95, 5.0)
    assert client.budget.limit == 2000  # TALENTLMS_HOURLY_QUOTA's default
    assert client.timeout == 4.0
    assert (
        client._url("users", {"email": "a+b@c.com"})
        == "https://acme.talentlms.com/api/v1/users/email:a%2Bb%40c.com"
    )
    assert (
        client._url("removeuserfromcourse", {"user_id": "3", "course_id": "7"})
        == "https://acme.talentlms.com/api/v1/removeuserfromcourse/user_id:3,course_id:7"
    )


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"Retry-After": "3"}, 3, 3),
        ({"Retry-After": "0.5"}, 0.5, 0.5),
        ({"X-RateLimit-Reset": "NOW+10"}, 8, 10),  # an epoch timestamp 10 s ahead
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0, 0),  # in the past: no pause
        ({}, 5, 5),
        ({"Retry-After": "soon"}, 5, 5),
    ],
)
def test_retry_delay(headers: dict[str, str], low: float, high: float) -> None:
    if headers.get("X-RateLimit-Reset") == "NOW+10":
        headers = {"X-RateLimit-Reset": str(int(time.time()) + 10)}
    assert low <= retry_delay(headers) <= high
