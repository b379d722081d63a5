"""The in-memory platform keeps TalentLMS's semantics and its controls are deterministic."""

from __future__ import annotations

import inspect

import pytest

from enrollment.adapters.memory_lms import InMemoryLearningPlatform
from enrollment.service_layer.ports import (
    LearningPlatform,
    LmsAuthRejected,
    LmsCourseMissing,
    LmsInDoubt,
    LmsRateLimited,
    LmsUnavailable,
    LmsUserMissing,
    NewUser,
    TaskItemResult,
    TaskStatus,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_user(i: int) -> NewUser:
    return NewUser(f"s{i}@example.com", "Ana", f"Souza{i}", f"s{i}", "S3cret!x")


def test_implements_every_method_of_the_port() -> None:
    for name, member in inspect.getmembers(LearningPlatform, inspect.isfunction):
        if not name.startswith("_"):
            ours = getattr(InMemoryLearningPlatform, name)
            assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters)


def test_single_calls_are_safe_to_repeat() -> None:
    lms = InMemoryLearningPlatform()
    user = lms.sign_up(new_user(1))
    assert lms.sign_up(new_user(1)) == user
    assert lms.enroll(user.id, "7") is True and lms.enroll(user.id, "7") is False
    assert lms.user_courses(user.id) == {"7"} and lms.course_users("7") == {user.id}
    assert lms.unenroll(user.id, "7") is True and lms.unenroll(user.id, "7") is False
    assert lms.calls["enroll"] == 2 and lms.total_calls == 8


def test_act_then_in_doubt_takes_effect_before_raising() -> None:
    lms = InMemoryLearningPlatform()
    user = lms.sign_up(new_user(1))
    lms.act_then_in_doubt("enroll")
    with pytest.raises(LmsInDoubt):
        lms.enroll(user.id, "9")
    assert lms.user_courses(user.id) == {"9"}
    assert lms.enroll(user.id, "9") is False  # once only

    lms.act_then_in_doubt("sign_up")
    with pytest.raises(LmsInDoubt):
        lms.sign_up(new_user(2))
    assert lms.find_user_by_email("s2@example.com") is not None


def test_fail_next_raises_before_acting() -> None:
    lms = InMemoryLearningPlatform()
    user = lms.sign_up(new_user(1))
    lms.fail_next("enroll", lambda: LmsUnavailable("refused"), times=2)
    for _ in range(2):
        with pytest.raises(LmsUnavailable):
            lms.enroll(user.id, "7")
    assert lms.enrolled("s1@example.com") == set()
    assert lms.enroll(user.id, "7") is True


def test_admin_actions_and_missing_things() -> None:
    lms = InMemoryLearningPlatform()
    user = lms.sign_up(new_user(1))
    lms.add_foreign_enrollment(user.id, "11")
    assert lms.user_courses(user.id) == {"11"}
    lms.remove_course("11")
    assert lms.user_courses(user.id) == set()
    with pytest.raises(LmsCourseMissing):
        lms.enroll(user.id, "11")
    lms.delete_user(user.id)
    with pytest.raises(LmsUserMissing):
        lms.user_courses(user.id)
    with pytest.raises(LmsUserMissing):
        lms.enroll(user.id, "7")
    assert lms.find_user_by_email("s1@example.com") is None
    again = lms.sign_up(new_user(1))
    assert again.id != user.id  # a new id: ids are never reused


def test_batches_settle_when_polled_with_item_results() -> None:
    clock = Clock()
    lms = InMemoryLearningPlatform(task_polls=2, clock=clock)
    existing = lms.add_user("s1@example.com")
    clock.now += 10
    task = lms.batch_upsert_users([new_user(1), new_user(2), NewUser("bad", "", "", "x", "p")])
    assert lms.task_status(task) == TaskStatus("pending")
    status = lms.task_status(task)
    assert status == TaskStatus(
        "completed",
        (
            TaskItemResult(0, True, "A user with the same email address already exists"),
            TaskItemResult(1, True),
            TaskItemResult(2, False, "Invalid arguments provided"),
        ),
    )
    created = lms.users_updated_since(1010.0)
    assert [u.email for u in created] == ["s2@example.com"]
    pairs = [(existing.id, "7"), (created[0].id, "404"), ("1", "7")]
    lms.add_foreign_enrollment(existing.id, "7")
    enroll_task = lms.batch_enroll(pairs)
    lms.settle_tasks()
    assert [(i.ok, i.message) for i in lms.task_status(enroll_task).items] == [
        (True, "The requested user is already enrolled in this course"),
        (False, "The requested course does not exist"),
        (False, "The requested user does not exist"),
    ]
    lms.fail_next_task()
    failed = lms.batch_enroll([(existing.id, "9")])
    lms.settle_tasks()
    assert lms.task_status(failed) == TaskStatus("failed") and lms.user_courses(existing.id) == {"7"}
    with pytest.raises(ValueError):
        lms.batch_enroll([])


def test_a_batch_in_doubt_creates_the_task_but_loses_its_id() -> None:
    lms = InMemoryLearningPlatform()
    user = lms.add_user("s1@example.com")
    lms.act_then_in_doubt("batch_enroll")
    with pytest.raises(LmsInDoubt):
        lms.batch_enroll([(user.id, "7")])
    lms.settle_tasks()
    assert lms.course_users("7") == {user.id}


def test_quota_and_auth() -> None:
    clock = Clock()
    lms = InMemoryLearningPlatform(hourly_quota=2, quota_window_seconds=60, clock=clock)
    lms.list_courses()
    lms.list_courses()
    assert lms.quota().remaining == 0
    with pytest.raises(LmsRateLimited) as limited:
        lms.list_courses()
    assert limited.value.retry_after == 60
    assert lms.calls["list_courses"] == 2 and lms.refused["rate_limited"] == 1
    clock.now += 60
    assert lms.quota().remaining == 2
    lms.reject_auth()
    with pytest.raises(LmsAuthRejected):
        lms.list_courses()
    lms.reject_auth(False)
    assert len(lms.list_courses()) == 3


def test_course_link_needs_an_enrollment() -> None:
    lms = InMemoryLearningPlatform()
    user = lms.add_user("s1@example.com")
    lms.enroll(user.id, "7")
    first, second = lms.course_link(user.id, "7"), lms.course_link(user.id, "7")
    assert first != second and "course_id:7" in first
    with pytest.raises(Exception, match="not enrolled"):
        lms.course_link(user.id, "9")
