"""Analytics settings from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from coursebridge.config import PlatformSettings, secret_env


@dataclass(frozen=True)
class AnalyticsSettings:
    platform: PlatformSettings
    pseudonym_key: bytes
    admin_token: str | None = None
    bigquery_dataset: str = "coursebridge"
    bigquery_location: str | None = None
    port: int = 8083
    batch_size: int = 500
    batch_wait_seconds: float = 0.05
    max_in_flight: int = 64

    @classmethod
    def from_env(cls) -> AnalyticsSettings:
        key = secret_env("ANALYTICS_PSEUDONYM_KEY") or ""
        if not key:
            raise RuntimeError(
                "ANALYTICS_PSEUDONYM_KEY is not set: buyers cannot be pseudonymised in the warehouse"
            )
        platform = PlatformSettings.from_env("analytics")
        # BigQuery takes each batch as one load job per table, at most 1,500 per table per day: there
        # the worker gathers up to 90 s (960 loads a day at most) and holds many messages meanwhile.
        on_bigquery = platform.backend == "gcp"
        batch, wait, in_flight = ("10000", "90", "10000") if on_bigquery else ("500", "0.05", "64")
        return cls(
            platform=platform,
            pseudonym_key=key.encode("utf-8"),
            admin_token=secret_env("ADMIN_TOKEN"),
            bigquery_dataset=os.environ.get("BIGQUERY_DATASET") or "coursebridge",
            bigquery_location=os.environ.get("BIGQUERY_LOCATION") or None,
            port=int(os.environ.get("ANALYTICS_PORT", "8083")),
            batch_size=int(os.environ.get("ANALYTICS_BATCH_SIZE", batch)),
            batch_wait_seconds=float(os.environ.get("ANALYTICS_BATCH_WAIT_SECONDS", wait)),
            max_in_flight=int(os.environ.get("ANALYTICS_MAX_IN_FLIGHT", in_flight)),
        )
