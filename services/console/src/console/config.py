"""The console's settings: where the four services' admin APIs are, and how operators sign in."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Literal

from coursebridge.config import secret_env

AuthMode = Literal["token", "iap"]
SERVICE_URLS = {
    "ingest": ("INGEST_URL", "INGEST_PORT", "8080"),
    "enrollment": ("ENROLLMENT_URL", "ENROLLMENT_PORT", "8081"),
    "subscription": ("SUBSCRIPTION_URL", "SUBSCRIPTION_PORT", "8082"),
    "analytics": ("ANALYTICS_URL", "ANALYTICS_PORT", "8083"),
}


class ConsoleMisconfigured(RuntimeError):
    """A setting the console cannot start without."""


def service_urls(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``<SERVICE>_URL``, else ``http://127.0.0.1:<SERVICE>_PORT`` (what ``make run`` starts)."""
    env = os.environ if environ is None else environ
    urls = {}
    for service, (url_var, port_var, port) in SERVICE_URLS.items():
        urls[service] = (env.get(url_var) or f"http://127.0.0.1:{env.get(port_var) or port}").rstrip("/")
    return urls


@dataclass(frozen=True)
class ConsoleSettings:
    admin_token: str
    urls: dict[str, str]
    port: int = 8084
    auth: AuthMode = "token"
    iap_audience: str | None = None
    secret_key: bytes = b""
    secure_cookies: bool = False
    timeout: float = 10.0

    @classmethod
    def from_env(cls) -> ConsoleSettings:
        token = secret_env("ADMIN_TOKEN")
        if not token:
            raise ConsoleMisconfigured("the console needs ADMIN_TOKEN (it calls the services' admin APIs)")
        auth = (os.environ.get("CONSOLE_AUTH") or "token").strip()
        if auth not in ("token", "iap"):
            raise ConsoleMisconfigured(f"CONSOLE_AUTH must be 'token' or 'iap', not {auth!r}")
        audience = (os.environ.get("IAP_AUDIENCE") or "").strip() or None
        if auth == "iap" and not audience:
            raise ConsoleMisconfigured(
                "CONSOLE_AUTH=iap needs IAP_AUDIENCE (/projects/<number>/global/backendServices/<id>)"
            )
        secret = secret_env("CONSOLE_SECRET_KEY")
        return cls(
            admin_token=token,
            urls=service_urls(),
            port=int(os.environ.get("CONSOLE_PORT") or 8084),
            auth=auth,  # type: ignore[arg-type]
            iap_audience=audience,
            secret_key=secret.encode() if secret else derived_secret_key(token),
            secure_cookies=(os.environ.get("CONSOLE_SECURE_COOKIES") or "").lower() in ("1", "true", "yes")
            or auth == "iap",
            timeout=float(os.environ.get("CONSOLE_UPSTREAM_TIMEOUT_SECONDS") or 10.0),
        )


def derived_secret_key(admin_token: str) -> bytes:
    """Sessions must be signed alike by every worker process: without ``CONSOLE_SECRET_KEY`` the key is
    derived from the admin token (one-way; rotating the token signs everyone out)."""
    return hmac.new(admin_token.encode(), b"coursebridge-console-session", hashlib.sha256).digest()
