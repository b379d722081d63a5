"""Ingest settings from the environment."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from coursebridge.config import PlatformSettings, env_list, secret_env
from ingest.adapters.hotmart_api import HotmartApiSettings

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class IngestSettings:
    platform: PlatformSettings
    hottoks: tuple[str, ...]
    admin_token: str | None = None
    port: int = 8080
    relay_batch_size: int = 100
    relay_poll_interval: float = 0.2
    accept_test_events: bool = False  # Hotmart "send test" bodies are recorded, published only on opt-in
    hotmart_api: HotmartApiSettings | None = None  # None: no credentials, reconciliation and backfill off
    reconcile_interval_seconds: float = 900.0
    reconcile_lookback_hours: float = 72.0
    reconcile_refund_lookback_days: float = 60.0  # refunds/chargebacks of sales up to this old
    reconcile_loop: bool = False  # `make run` reconciles in the relay worker; GKE uses a CronJob

    @classmethod
    def from_env(cls, *, require_hottok: bool = True) -> IngestSettings:
        """``require_hottok=False`` for the relay, which never sees a webhook and needs no secret."""
        hottoks = tuple(env_list("HOTMART_HOTTOK"))
        if require_hottok and not hottoks:
            raise RuntimeError(
                "HOTMART_HOTTOK is not set: the ingest service cannot tell Hotmart's webhooks apart"
            )
        return cls(
            platform=PlatformSettings.from_env("ingest"),
            hottoks=hottoks,
            admin_token=secret_env("ADMIN_TOKEN"),
            port=int(os.environ.get("INGEST_PORT", "8080")),
            relay_batch_size=int(os.environ.get("INGEST_RELAY_BATCH_SIZE", "100")),
            relay_poll_interval=float(os.environ.get("INGEST_RELAY_POLL_SECONDS", "0.2")),
            accept_test_events=_flag("HOTMART_ACCEPT_TEST_EVENTS"),
            hotmart_api=hotmart_api_settings(),
            reconcile_interval_seconds=_positive("HOTMART_RECONCILE_INTERVAL_SECONDS", 900.0),
            reconcile_lookback_hours=_positive("HOTMART_RECONCILE_LOOKBACK_HOURS", 72.0),
            reconcile_refund_lookback_days=_positive("HOTMART_RECONCILE_REFUND_LOOKBACK_DAYS", 60.0),
            reconcile_loop=_flag("HOTMART_RECONCILE_LOOP"),
        )

    @property
    def hotmart_api_status(self) -> str:
        """What /readyz says about the Hotmart API features."""
        if self.hotmart_api is None:
            return "off: HOTMART_CLIENT_ID / HOTMART_CLIENT_SECRET not set (no reconciliation, no backfill)"
        return f"on: {self.hotmart_api.api_base_url}"


def hotmart_api_settings() -> HotmartApiSettings | None:
    """Hotmart API credentials from the environment; None (features off) without id and secret."""
    client_id = os.environ.get("HOTMART_CLIENT_ID", "").strip()
    client_secret = os.environ.get("HOTMART_CLIENT_SECRET", "").strip()
    if not client_id or not client_secret:
        return None
    basic = os.environ.get("HOTMART_BASIC", "").strip().removeprefix("Basic ").strip()
    if not basic:
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    defaults = HotmartApiSettings(client_id, client_secret, basic)
    return HotmartApiSettings(
        client_id=client_id,
        client_secret=client_secret,
        basic=basic,
        api_base_url=os.environ.get("HOTMART_API_BASE_URL", "").strip() or defaults.api_base_url,
        auth_url=os.environ.get("HOTMART_AUTH_URL", "").strip() or defaults.auth_url,
        calls_per_minute=int(os.environ.get("HOTMART_API_CALLS_PER_MINUTE", "").strip() or 450),
    )


def _positive(name: str, default: float) -> float:
    value = float(os.environ.get(name, "").strip() or default)
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0")
    return value


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
