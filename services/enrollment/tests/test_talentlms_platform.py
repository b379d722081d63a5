"""The facade: the whole ``LearningPlatform`` port over the fake, v1 and v2 sharing one ``CallBudget``."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import pytest

from enrollment.adapters.talentlms_platform import TalentLmsConfig, TalentLmsPlatform, build_talentlms
from enrollment.service_layer.ports import LearningPlatform, LmsRateLimited, NewUser


def new_user(i: int) -> NewUser:
    return NewUser(f"buyer{i}@example.com", "Ana", f"Souza{i}", f"buyer{i}", "S3cret!x")


def wait_task(platform: TalentLmsPlatform, task_id: str) -> Any:
    end = time.monotonic() + 5
    status = platform.task_status(task_id)
    while status.state in ("pending", "running") and time.monotonic() < end:
        time.sleep(0.05)
        status = platform.task_status(task_id)
    return status


def test_implements_every_method_of_the_port_with_its_signature() -> None:
    for name, member in inspect.getmembers(LearningPlatform, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = getattr(TalentLmsPlatform, name)
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters), name


def test_build_from_env_derives_the_v2_base() -> None:
    env = {
        "TALENTLMS_BASE_URL": "https://acme.talentlms.com/api/v1/",
        "TALENTLMS_API_KEY": "key-from-env-123",
        "TALENTLMS_HOURLY_QUOTA": "10000",
        "TALENTLMS_API_VERSION": "2025-12-12",
        "TALENTLMS_RATE_LIMIT_CALLS": "95",
    }
    platform = build_talentlms(env)
    assert platform.v1.base_url == "https://acme.talentlms.com/api/v1"
    assert platform.v2.base_url == "https://acme.talentlms.com/api/v2"
    assert platform.v2.api_version == "2025-12-12"
    assert platform.v1.budget is platform.v2.budget is platform.budget
    assert platform.budget.limit == 10_000 and platform.budget.limiter.calls == 95  # type: ignore[union-attr]
    assert platform.budget.refresher == platform.v1.quota
    assert "key-from-env-123" not in repr(TalentLmsConfig.from_env(env))
    other = build_talentlms({**env, "TALENTLMS_V2_BASE_URL": "https://eu.example.com/v2/"})
    assert other.v2.base_url == "https://eu.example.com/v2"
    with pytest.raises(ValueError, match="TALENTLMS_V2_BASE_URL"):
        build_talentlms({**env, "TALENTLMS_BASE_URL": "https://acme.talentlms.com/api"})
    with pytest.raises(ValueError):
        build_talentlms({"TALENTLMS_BASE_URL": "https://acme.talentlms.com/api/v1"})


def test_a_launch_through_the_facade(fake_lms: Any) -> None:
    platform: LearningPlatform = fake_lms.platform()
    started = time.time() - 1
    task_id = platform.batch_upsert_users([new_user(i) for i in range(3)])
    assert wait_task(fake_lms.platform(), task_id).state == "completed"
    users = {u.email: u for u in platform.users_updated_since(started)}
    assert set(users) == {f"buyer{i}@example.com" for i in range(3)}
    pairs = [(u.id, "7") for u in users.values()]
    assert wait_task(fake_lms.platform(), platform.batch_enroll(pairs)).state == "completed"
    assert platform.course_users("7") == {u.id for u in users.values()}
    ana = users["buyer0@example.com"]
    assert platform.user_courses(ana.id) == {"7"}
    assert platform.enroll(ana.id, "7") is False and platform.enroll(ana.id, "9") is True
    assert platform.unenroll(ana.id, "9") is True
    found = platform.find_user_by_email("buyer1@example.com")
    assert found is not None and found.id == users["buyer1@example.com"].id
    assert found.courses == frozenset({"7"})  # v1 lists the courses with the user
    assert platform.sign_up(new_user(1)) == found  # the e-mail exists: the same user, looked up
    assert "course_id:7" in platform.course_link(ana.id, "7")
    assert {c.id for c in platform.list_courses()} == {"7", "9", "11", "12"}


def test_v1_and_v2_calls_spend_one_budget(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(hourly_quota=6, quota_window_seconds=60, task_delay_seconds=0)
    platform = fake.platform(hourly_quota=2000, quota_window_seconds=60)
    quota = platform.quota()  # not counted; teaches the budget the real size
    assert (quota.limit, quota.remaining) == (6, 6) and platform.budget.remaining == 6
    platform.list_courses()  # v1
    task_id = platform.batch_upsert_users([new_user(1)])  # v2
    platform.task_status(task_id)  # v2 poll: counted too
    assert platform.budget.remaining == 3
    assert platform.budget.refresh().remaining == 3  # TalentLMS agrees
    platform.list_courses()
    platform.users_updated_since(0)
    platform.list_courses()
    assert platform.budget.remaining == 0
    for call in (platform.list_courses, lambda: platform.users_updated_since(0)):
        with pytest.raises(LmsRateLimited) as limited:
            call()
        assert 50 < limited.value.retry_after <= 61
    snapshot = fake.state.snapshot()
    assert snapshot["responses_429"] == 0 and snapshot["rate_limit"]["hourly_remaining"] == 0
    assert snapshot["calls_total"] == 8  # 6 counted + 2 ratelimit; the refused calls never left


def test_a_quota_smaller_than_configured_costs_one_429_at_most(fake_lms_factory: Callable[..., Any]) -> None:
    # v1 answers carry no quota headers (the fake's v1 headers describe the 5-s window): the budget only
    # finds out from the 429, and then sends nothing more until the reset.
    fake = fake_lms_factory(hourly_quota=5, quota_window_seconds=120)
    platform = fake.platform(hourly_quota=2000)
    for _ in range(5):
        platform.list_courses()
    for _ in range(4):
        with pytest.raises(LmsRateLimited) as limited:
            platform.list_courses()
        assert 100 < limited.value.retry_after <= 121
    assert fake.state.snapshot()["responses_429"] == 1
    assert platform.budget.remaining == 0
