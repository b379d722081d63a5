"""Settings read from the environment, shared by every service."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Backend = Literal["embedded", "gcp"]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


@dataclass(frozen=True)
class PlatformSettings:
    backend: Backend = "embedded"
    data_dir: Path = field(default_factory=lambda: Path(".data"))
    gcp_project: str = "coursebridge-local"
    firestore_database: str = "(default)"
    service_name: str = "coursebridge"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, service_name: str) -> PlatformSettings:
        backend = _env("COURSEBRIDGE_BACKEND", "embedded")
        if backend not in ("embedded", "gcp"):
            raise ValueError(f"COURSEBRIDGE_BACKEND must be 'embedded' or 'gcp', not {backend!r}")
        return cls(
            backend=backend,  # type: ignore[arg-type]
            data_dir=Path(_env("COURSEBRIDGE_DATA_DIR", ".data")),
            gcp_project=_env("GOOGLE_CLOUD_PROJECT", _env("GCP_PROJECT", "coursebridge-local")),
            firestore_database=_env("FIRESTORE_DATABASE", "(default)"),
            service_name=service_name,
            log_level=_env("LOG_LEVEL", "INFO").upper(),
        )
