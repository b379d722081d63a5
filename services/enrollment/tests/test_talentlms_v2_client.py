"""``TalentLmsV2Client`` against the fake's API v2 over loopback HTTP, and its defensive task parsing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from enrollment.adapters.budget import CallBudget
from enrollment.adapters.rate_limit import RateLimiter
from enrollment.adapters.talentlms_v2 import TalentLmsV2Client, parse_task
from enrollment.service_layer.ports import (
    LmsAuthRejected,
    LmsCourseMissing,
    LmsInDoubt,
    LmsRateLimited,
    LmsUserMissing,
    NewUser,
    TaskItemResult,
    TaskStatus,
)


def new_user(i: int, email: str | None = None) -> NewUser:
    return NewUser(
        email=email or f"student{i}@example.com",
        first_name="Ana",
        last_name=f"Souza{i}",
        login=f"student{i}",
        password="S3cret!x",
    )


def wait(client: TalentLmsV2Client, task_id: str, deadline: float = 5.0) -> TaskStatus:
    end = time.monotonic() + deadline
    status = client.task_status(task_id)
    while status.state in ("pending", "running") and time.monotonic() < end:
        time.sleep(0.05)
        status = client.task_status(task_id)
    return status


@pytest.fixture
def v2(fake_lms: Any) -> TalentLmsV2Client:
    return fake_lms.v2_client()


def test_batch_upsert_users_then_find_their_ids(v2: TalentLmsV2Client, fake_lms: Any) -> None:
    fake_lms.add_user("taken@example.com", login="taken")
    started = time.time()
    task_id = v2.batch_upsert_users([new_user(1), new_user(2), new_user(3, email="taken@example.com")])
    status = wait(v2, task_id)
    assert status == TaskStatus(
        state="completed",
        items=(
            TaskItemResult(0, True),
            TaskItemResult(1, True),
            TaskItemResult(2, True, "A user with the same email address already exists"),
        ),
    )
    # to the second: "taken", created in the same second as ``started``, may come along
    created = [u for u in v2.users_updated_since(started) if u.login != "taken"]
    assert sorted(u.email for u in created) == ["student1@example.com", "student2@example.com"]
    assert all(u.id.isdigit() and u.active for u in created)
    assert v2.find_user_by_email("STUDENT1@example.com") in created
    assert v2.find_user_by_email("nobody@example.com") is None


def test_batch_enroll_partial_failure_and_read_back(v2: TalentLmsV2Client, fake_lms: Any) -> None:
    ana = fake_lms.add_user("ana@example.com")
    assert v2.enroll(ana, "7") is True
    assert v2.enroll(ana, "7") is False
    task_id = v2.batch_enroll([(ana, "7"), (ana, "9"), (ana, "404"), ("999", "7")])
    items = wait(v2, task_id).items
    assert [(i.index, i.ok) for i in items] == [(0, True), (1, True), (2, False), (3, False)]
    assert items[2].message == "The requested course does not exist"
    assert v2.user_courses(ana) == {"7", "9"}
    assert v2.unenroll(ana, "9") is True and v2.unenroll(ana, "9") is False
    with pytest.raises(LmsUserMissing):
        v2.user_courses("999")
    with pytest.raises(LmsCourseMissing):
        v2.enroll(ana, "404")
    link = v2.course_link(ana, "7")
    assert link.startswith(fake_lms.url)


def test_users_updated_since_reads_every_page(v2: TalentLmsV2Client, fake_lms: Any) -> None:
    ids = {fake_lms.add_user(f"s{i}@example.com", login=f"s{i}") for i in range(230)}
    found = v2.users_updated_since(time.time() - 60)
    assert {u.id for u in found} == ids and len(found) == 230
    assert fake_lms.state.snapshot()["calls"] == {"GET /v2/users": 3}  # 100 per page


def test_batches_are_1_to_100_items_before_anything_is_sent(v2: TalentLmsV2Client, fake_lms: Any) -> None:
    with pytest.raises(ValueError):
        v2.batch_enroll([("1", "7")] * 101)
    with pytest.raises(ValueError):
        v2.batch_upsert_users([])
    assert fake_lms.state.snapshot()["calls"] == {}


def test_a_failed_task(v2: TalentLmsV2Client, fake_lms: Any) -> None:
    fake_lms.state.configure_tasks(fail_next=1)
    assert wait(v2, v2.batch_upsert_users([new_user(1)])).state == "failed"


def test_errors_by_meaning_on_v2(fake_lms: Any) -> None:
    bad_key = fake_lms.v2_client()
    bad_key._headers["X-API-Key"] = "wrong-key-123456"
    with pytest.raises(LmsAuthRejected):
        bad_key.users_updated_since(0)
    client = fake_lms.v2_client()
    fake_lms.set_failure("acted_500", count=1, endpoint="POST /v2/batch/enrollments")
    user_id = fake_lms.add_user("ana@example.com")
    with pytest.raises(LmsInDoubt):
        client.batch_enroll([(user_id, "7")])
    time.sleep(0.3)  # the task's delay
    assert fake_lms.enrollments() == {(user_id, "7")}  # the batch ran although its answer was a 500
    fake_lms.set_failure("429", seconds=2, count=1)
    with pytest.raises(LmsRateLimited) as limited:
        client.task_status("anything")
    assert limited.value.retry_after == 2


def test_nested_error_bodies_are_read(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(v2_error_style="nested")
    client = fake.v2_client()
    with pytest.raises(LmsUserMissing, match="does not exist"):
        client.user_courses("999")


def test_unaccepted_api_version_is_a_clear_permanent_error(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(api_versions=["2025-12-12"])
    with pytest.raises(Exception, match="X-API-Version"):
        fake.v2_client().users_updated_since(0)
    assert fake.v2_client(api_version="2025-12-12").users_updated_since(0) == []


def test_quota_headers_teach_the_shared_budget(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(hourly_quota=3, quota_window_seconds=60)
    budget = CallBudget(RateLimiter(1000, 1.0, max_wait=0.0), hourly_quota=2000)
    client = fake.v2_client(budget=budget)
    client.users_updated_since(0)
    assert (budget.limit, budget.remaining) == (3, 2)
    assert budget.reset_at is not None and time.time() + 50 < budget.reset_at <= time.time() + 61
    client.users_updated_since(0)
    client.users_updated_since(0)
    with pytest.raises(LmsRateLimited) as limited:
        client.users_updated_since(0)
    assert 50 < limited.value.retry_after <= 61
    snapshot = fake.state.snapshot()
    assert snapshot["responses_429"] == 0 and snapshot["calls"] == {"GET /v2/users": 3}


# --- task parsing, for shapes the real API might use -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"_data": {"status": "queued"}}, TaskStatus("pending")),
        ({"_data": {"state": "IN PROGRESS"}}, TaskStatus("running")),
        (
            {"status": "done", "progress": {"total": 2, "processed": 2}},
            TaskStatus("completed", (TaskItemResult(0, None), TaskItemResult(1, None))),
        ),
        (
            {"_data": {"status": "weird", "progress": {"total": 3, "processed": 3}}},
            TaskStatus(
                "completed", (TaskItemResult(0, None), TaskItemResult(1, None), TaskItemResult(2, None))
            ),
        ),
        ({"_data": {"status": "weird", "progress": {"total": 3, "processed": 1}}}, TaskStatus("running")),
        ({"_data": {"status": {"name": "Failed"}}}, TaskStatus("failed")),
        ({"_data": {}}, TaskStatus("running")),
        ("not json at all", TaskStatus("running")),
        (
            {
                "_data": {
                    "status": "completed",
                    "total": 3,
                    "errors": [{"index": 1, "error": {"message": "nope"}}],
                }
            },
            TaskStatus(
                "completed",
                (TaskItemResult(0, None), TaskItemResult(1, False, "nope"), TaskItemResult(2, None)),
            ),
        ),
        (
            {"_data": {"status": "completed", "items": [{"success": True}, {"ok": False, "message": "bad"}]}},
            TaskStatus("completed", (TaskItemResult(0, True), TaskItemResult(1, False, "bad"))),
        ),
        (
            {
                "_data": {
                    "status": "completed",
                    "results": [{"status": "error", "message": "already enrolled"}],
                }
            },
            TaskStatus("completed", (TaskItemResult(0, True, "already enrolled"),)),
        ),
    ],
)
def test_parse_task_defensively(body: Any, expected: TaskStatus) -> None:
    assert parse_task(body) == expected


def test_no_email_or_api_key_in_v2_errors_or_logs(fake_lms: Any) -> None:
    from structlog.testing import capture_logs

    client = fake_lms.v2_client(timeout=0.2)
    email = "ana.souza+promo@example.com"
    fake_lms.set_failure("500", count=1)
    with capture_logs() as logs, pytest.raises(LmsInDoubt) as failure:
        client.find_user_by_email(email)
    fake_lms.set_failure("slow", seconds=0.6, count=1)
    with capture_logs() as more_logs, pytest.raises(LmsInDoubt) as timeout:
        client.find_user_by_email(email)
    for exc in (failure.value, timeout.value):
        text = f"{exc!s} {exc!r} {exc.__cause__!r} {exc.__context__!r}"
        assert "@" not in text and "%40" not in text and "ana.souza" not in text
        assert fake_lms.api_key not in text
    logged = repr(logs + more_logs)
    assert logs and "ana.souza" not in logged and fake_lms.api_key not in logged
