"""The whole ``LearningPlatform`` port over TalentLMS: v1 for single calls, v2 for batches, ONE budget.

v1 is the proven path for everything one student at a time (sign-up, enrol, read back, go-to links, the
quota); v2 brings what v1 lacks: batches of up to 100 with background tasks, and "users updated since"
paged reads that find the ids of batch-created users. Both clients share one ``CallBudget``, so the
deployment's dispatcher sees one short limit and one hourly quota, as TalentLMS counts them.

Configuration (``TalentLmsConfig.from_env``):

- ``TALENTLMS_BASE_URL``        v1 base, e.g. ``https://acme.talentlms.com/api/v1``;
- ``TALENTLMS_V2_BASE_URL``     v2 base; default: the v1 base with its trailing ``v1`` made ``v2``;
- ``TALENTLMS_API_KEY``         the key (never logged);
- ``TALENTLMS_API_VERSION``     v2's ``X-API-Version`` (default ``2025-07-01``; no valid value is published);
- ``TALENTLMS_HOURLY_QUOTA``    the plan's quota (default 2000; learned from TalentLMS as it answers);
- ``TALENTLMS_QUOTA_WINDOW_SECONDS`` the quota's window (3600; shorter only against a compressed fake);
- ``TALENTLMS_TIMEOUT_SECONDS`` per call (10);
- ``TALENTLMS_RATE_LIMIT_CALLS`` / ``_WINDOW_SECONDS`` / ``_MAX_WAIT_SECONDS``: short limit (190 / 5 / 30).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from enrollment.adapters.budget import DEFAULT_HOURLY_QUOTA, DEFAULT_QUOTA_WINDOW_SECONDS, CallBudget
from enrollment.adapters.rate_limit import (
    DEFAULT_CALLS,
    DEFAULT_MAX_WAIT_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    RateLimiter,
)
from enrollment.adapters.talentlms import TalentLmsClient
from enrollment.adapters.talentlms_v2 import DEFAULT_API_VERSION, TalentLmsV2Client
from enrollment.service_layer.ports import LmsCourse, LmsUser, NewUser, Quota, TaskStatus, TimelineEntry


@dataclass(frozen=True)
class TalentLmsConfig:
    base_url: str
    api_key: str
    v2_base_url: str | None = None
    api_version: str = DEFAULT_API_VERSION
    hourly_quota: int = DEFAULT_HOURLY_QUOTA
    quota_window_seconds: float = DEFAULT_QUOTA_WINDOW_SECONDS
    timeout: float = 10.0
    rate_limit_calls: int = DEFAULT_CALLS
    rate_limit_window_seconds: float = DEFAULT_WINDOW_SECONDS
    rate_limit_max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS

    def __repr__(self) -> str:  # never the key
        return f"TalentLmsConfig(base_url={self.base_url!r}, api_version={self.api_version!r}, ...)"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TalentLmsConfig:
        env = os.environ if environ is None else environ
        base_url = env.get("TALENTLMS_BASE_URL") or ""
        api_key = env.get("TALENTLMS_API_KEY") or ""
        if not base_url or not api_key:
            raise ValueError("TALENTLMS_BASE_URL and TALENTLMS_API_KEY must be set")
        return cls(
            base_url=base_url,
            api_key=api_key,
            v2_base_url=env.get("TALENTLMS_V2_BASE_URL") or None,
            api_version=env.get("TALENTLMS_API_VERSION") or DEFAULT_API_VERSION,
            hourly_quota=int(env.get("TALENTLMS_HOURLY_QUOTA") or DEFAULT_HOURLY_QUOTA),
            quota_window_seconds=float(
                env.get("TALENTLMS_QUOTA_WINDOW_SECONDS") or DEFAULT_QUOTA_WINDOW_SECONDS
            ),
            timeout=float(env.get("TALENTLMS_TIMEOUT_SECONDS") or 10.0),
            rate_limit_calls=int(env.get("TALENTLMS_RATE_LIMIT_CALLS") or DEFAULT_CALLS),
            rate_limit_window_seconds=float(
                env.get("TALENTLMS_RATE_LIMIT_WINDOW_SECONDS") or DEFAULT_WINDOW_SECONDS
            ),
            rate_limit_max_wait_seconds=float(
                env.get("TALENTLMS_RATE_LIMIT_MAX_WAIT_SECONDS") or DEFAULT_MAX_WAIT_SECONDS
            ),
        )

    def resolved_v2_base_url(self) -> str:
        if self.v2_base_url:
            return self.v2_base_url.rstrip("/")
        base = self.base_url.rstrip("/")
        if base.endswith("/v1"):
            return base[: -len("v1")] + "v2"
        raise ValueError("TALENTLMS_BASE_URL does not end in /v1: set TALENTLMS_V2_BASE_URL")


class TalentLmsPlatform:
    """``LearningPlatform`` over TalentLMS. Thread-safe; one per process (one budget per deployment)."""

    def __init__(self, v1: TalentLmsClient, v2: TalentLmsV2Client, budget: CallBudget) -> None:
        if v1.budget is not budget or v2.budget is not budget:
            raise ValueError("the v1 and v2 clients must share the platform's one CallBudget")
        self.v1 = v1
        self.v2 = v2
        self.budget = budget
        if budget.refresher is None:
            budget.refresher = v1.quota

    def close(self) -> None:
        self.v1.close()
        self.v2.close()

    # --- users -------------------------------------------------------------------------------------------

    def find_user_by_email(self, email: str) -> LmsUser | None:
        return self.v1.find_user_by_email(email)

    def find_user_by_id(self, user_id: str) -> LmsUser | None:
        return self.v1.find_user_by_id(user_id)

    def sign_up(self, new_user: NewUser) -> LmsUser:
        return self.v1.sign_up(new_user)

    def user_courses(self, user_id: str) -> set[str]:
        return self.v1.user_courses(user_id)

    def set_user_active(self, user_id: str, active: bool) -> None:
        self.v1.set_user_active(user_id, active)

    # --- enrollments -------------------------------------------------------------------------------------

    def enroll(self, user_id: str, course_id: str) -> bool:
        return self.v1.enroll(user_id, course_id)

    def unenroll(self, user_id: str, course_id: str) -> bool:
        return self.v1.unenroll(user_id, course_id)

    # --- courses -----------------------------------------------------------------------------------------

    def list_courses(self) -> list[LmsCourse]:
        return self.v1.list_courses()

    def course_users(self, course_id: str) -> set[str]:
        return self.v1.course_users(course_id)

    # --- batch (v2) --------------------------------------------------------------------------------------

    def batch_upsert_users(self, users: Sequence[NewUser]) -> str:
        return self.v2.batch_upsert_users(users)

    def batch_enroll(self, pairs: Sequence[tuple[str, str]]) -> str:
        return self.v2.batch_enroll(pairs)

    def task_status(self, task_id: str) -> TaskStatus:
        return self.v2.task_status(task_id)

    def users_updated_since(self, since_epoch: float) -> list[LmsUser]:
        return self.v2.users_updated_since(since_epoch)

    # --- learning activity -------------------------------------------------------------------------------

    def timeline(
        self, event_type: str, *, user_id: str | None = None, course_id: str | None = None
    ) -> list[TimelineEntry]:
        return self.v1.timeline(event_type, user_id=user_id, course_id=course_id)

    # --- budget and links --------------------------------------------------------------------------------

    def quota(self) -> Quota:
        return self.v1.quota()

    def course_link(self, user_id: str, course_id: str) -> str:
        return self.v1.course_link(user_id, course_id)


def build_talentlms(config: TalentLmsConfig | Mapping[str, str] | None = None) -> TalentLmsPlatform:
    """The facade from a ``TalentLmsConfig``, an environment mapping, or ``os.environ`` (None)."""
    if not isinstance(config, TalentLmsConfig):
        config = TalentLmsConfig.from_env(config)
    limiter = RateLimiter(
        config.rate_limit_calls, config.rate_limit_window_seconds, max_wait=config.rate_limit_max_wait_seconds
    )
    budget = CallBudget(
        limiter, hourly_quota=config.hourly_quota, quota_window_seconds=config.quota_window_seconds
    )
    v1 = TalentLmsClient(config.base_url, config.api_key, budget=budget, timeout=config.timeout)
    v2 = TalentLmsV2Client(
        config.resolved_v2_base_url(),
        config.api_key,
        budget=budget,
        api_version=config.api_version,
        timeout=config.timeout,
    )
    return TalentLmsPlatform(v1, v2, budget)
