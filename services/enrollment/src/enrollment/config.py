"""Enrollment settings from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from coursebridge.config import PlatformSettings, secret_env

DEFAULT_CALLS = 190  # TalentLMS's 200 calls / 5 s, minus headroom for other tools of the same portal
DEFAULT_WINDOW_SECONDS = 5.0
DEFAULT_HOURLY_QUOTA = 2000  # Core / Small / Basic plans; Grow and above: 10000


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclass(frozen=True)
class EnrollmentSettings:
    platform: PlatformSettings
    talentlms_base_url: str | None = None
    talentlms_api_key: str | None = None
    admin_token: str | None = None
    port: int = 8081
    rate_limit_calls: int = DEFAULT_CALLS
    rate_limit_period: float = DEFAULT_WINDOW_SECONDS
    hourly_quota: int = DEFAULT_HOURLY_QUOTA
    quota_window: float = 3600.0
    lms_timeout: float = 10.0
    max_in_flight: int = 10
    relay_poll_interval: float = 0.2
    lease_seconds: float = 30.0
    batch_threshold: int = 50
    audit_interval: float = 3600.0
    audit_quota_share: float = 0.1
    course_list_interval: float = 600.0
    learning_interval: float = 900.0  # seconds between timeline polls; 0: no learning events
    learning_quota_share: float = 0.05  # at most this share of the hourly quota per hour on learning reads

    @classmethod
    def from_env(cls) -> EnrollmentSettings:
        return cls(
            platform=PlatformSettings.from_env("enrollment"),
            talentlms_base_url=os.environ.get("TALENTLMS_BASE_URL") or None,
            talentlms_api_key=secret_env("TALENTLMS_API_KEY"),
            admin_token=secret_env("ADMIN_TOKEN"),
            port=_int("ENROLLMENT_PORT", 8081),
            rate_limit_calls=_int("TALENTLMS_RATE_LIMIT_CALLS", DEFAULT_CALLS),
            rate_limit_period=_float("TALENTLMS_RATE_LIMIT_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS),
            hourly_quota=_int("TALENTLMS_HOURLY_QUOTA", DEFAULT_HOURLY_QUOTA),
            quota_window=_float("TALENTLMS_QUOTA_WINDOW_SECONDS", 3600.0),
            lms_timeout=_float("TALENTLMS_TIMEOUT_SECONDS", 10.0),
            max_in_flight=_int("ENROLLMENT_MAX_IN_FLIGHT", 10),
            relay_poll_interval=_float("ENROLLMENT_RELAY_POLL_SECONDS", 0.2),
            lease_seconds=_float("ENROLLMENT_LEASE_SECONDS", 30.0),
            batch_threshold=_int("ENROLLMENT_BATCH_THRESHOLD", 50),
            audit_interval=_float("ENROLLMENT_AUDIT_INTERVAL_SECONDS", 3600.0),
            audit_quota_share=_float("ENROLLMENT_AUDIT_QUOTA_SHARE", 0.1),
            course_list_interval=_float("ENROLLMENT_COURSE_LIST_SECONDS", 600.0),
            learning_interval=_float("ENROLLMENT_LEARNING_INTERVAL_SECONDS", 900.0),
            learning_quota_share=_float("ENROLLMENT_LEARNING_QUOTA_SHARE", 0.05),
        )
