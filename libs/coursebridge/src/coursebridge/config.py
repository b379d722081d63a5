"""Settings read from the environment, shared by every service."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Backend = Literal["embedded", "gcp"]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_list(name: str) -> list[str]:
    return [item.strip() for item in (secret_env(name) or "").split(",") if item.strip()]


def secret_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A secret from ``NAME``, or from the file named by ``NAME_FILE`` (trailing newline dropped).

    On GKE secrets are Secret Manager versions mounted as files (Secrets Store CSI) into only the pods
    that use them, so they are never in the pod spec or the process environment; locally they are plain
    environment variables. An unreadable ``NAME_FILE`` is an error, not a missing secret.
    """
    env = os.environ if environ is None else environ
    value = env.get(name, "").strip()
    if value:
        return value
    path = env.get(f"{name}_FILE", "").strip()
    if not path:
        return None
    try:
        return Path(path).read_text("utf-8").strip() or None
    except OSError as error:
        raise RuntimeError(f"{name}_FILE={path} cannot be read: {error.strerror}") from None


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
