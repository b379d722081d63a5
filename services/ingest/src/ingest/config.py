"""Ingest settings from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from coursebridge.config import PlatformSettings, env_list, secret_env

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class IngestSettings:
    platform: PlatformSettings
    hottoks: tuple[str, ...]
    admin_token: str | None = None
    port: int = 8080
    relay_batch_size: int = 100
    relay_poll_interval: float = 0.2

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
        )
