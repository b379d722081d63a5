"""Enrollment settings from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from coursebridge.config import PlatformSettings, secret_env
from enrollment.adapters.rate_limit import DEFAULT_CALLS, DEFAULT_WINDOW_SECONDS


@dataclass(frozen=True)
class EnrollmentSettings:
    platform: PlatformSettings
    talentlms_base_url: str | None = None
    talentlms_api_key: str | None = None
    admin_token: str | None = None
    port: int = 8081
    rate_limit_calls: int = DEFAULT_CALLS
    rate_limit_period: float = DEFAULT_WINDOW_SECONDS
    lms_timeout: float = 10.0
    max_in_flight: int = 10
    relay_poll_interval: float = 0.2
    redrive_interval: float = 2.0
    reconcile_interval: float = 30.0
    stale_after: float = 120.0

    @classmethod
    def from_env(cls) -> EnrollmentSettings:
        return cls(
            platform=PlatformSettings.from_env("enrollment"),
            talentlms_base_url=os.environ.get("TALENTLMS_BASE_URL") or None,
            talentlms_api_key=secret_env("TALENTLMS_API_KEY"),
            admin_token=secret_env("ADMIN_TOKEN"),
            port=int(os.environ.get("ENROLLMENT_PORT", "8081")),
            rate_limit_calls=int(os.environ.get("TALENTLMS_RATE_LIMIT_CALLS") or DEFAULT_CALLS),
            rate_limit_period=float(
                os.environ.get("TALENTLMS_RATE_LIMIT_WINDOW_SECONDS") or DEFAULT_WINDOW_SECONDS
            ),
            lms_timeout=float(os.environ.get("TALENTLMS_TIMEOUT_SECONDS", "10")),
            max_in_flight=int(os.environ.get("ENROLLMENT_MAX_IN_FLIGHT", "10")),
            relay_poll_interval=float(os.environ.get("ENROLLMENT_RELAY_POLL_SECONDS", "0.2")),
            redrive_interval=float(os.environ.get("ENROLLMENT_REDRIVE_SECONDS", "2")),
            reconcile_interval=float(os.environ.get("ENROLLMENT_RECONCILE_SECONDS", "30")),
            stale_after=float(os.environ.get("ENROLLMENT_STALE_AFTER_SECONDS", "120")),
        )
