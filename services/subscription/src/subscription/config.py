"""Subscription service settings from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from coursebridge.config import PlatformSettings, secret_env
from subscription.domain.access import DEFAULT_GRACE_DAYS, DEFAULT_MAX_SKEW


def _optional_float(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    seconds = float(value)
    return seconds if seconds > 0 else None


@dataclass(frozen=True)
class SubscriptionSettings:
    platform: PlatformSettings
    admin_token: str | None = None
    port: int = 8082
    default_grace_days: int = DEFAULT_GRACE_DAYS
    sweep_interval_seconds: float | None = None  # the worker sweeps periodically when set
    relay_batch_size: int = 100
    relay_poll_interval: float = 0.2
    # how far ahead of this pod's clock an earlier evaluation may be stamped and still be trusted
    max_clock_skew: timedelta = DEFAULT_MAX_SKEW

    @classmethod
    def from_env(cls) -> SubscriptionSettings:
        grace = int(os.environ.get("SUBSCRIPTION_DEFAULT_GRACE_DAYS", "").strip() or DEFAULT_GRACE_DAYS)
        if grace < 0:
            raise ValueError("SUBSCRIPTION_DEFAULT_GRACE_DAYS must be 0 or more")
        skew_env = os.environ.get("SUBSCRIPTION_MAX_CLOCK_SKEW_SECONDS", "").strip()
        skew = float(skew_env) if skew_env else DEFAULT_MAX_SKEW.total_seconds()
        if skew < 0:
            raise ValueError("SUBSCRIPTION_MAX_CLOCK_SKEW_SECONDS must be 0 or more")
        return cls(
            platform=PlatformSettings.from_env("subscription"),
            admin_token=secret_env("ADMIN_TOKEN"),
            port=int(os.environ.get("SUBSCRIPTION_PORT", "8082")),
            default_grace_days=grace,
            sweep_interval_seconds=_optional_float("SUBSCRIPTION_SWEEP_INTERVAL_SECONDS"),
            relay_batch_size=int(os.environ.get("SUBSCRIPTION_RELAY_BATCH_SIZE", "100")),
            relay_poll_interval=float(os.environ.get("SUBSCRIPTION_RELAY_POLL_SECONDS", "0.2")),
            max_clock_skew=timedelta(seconds=skew),
        )
