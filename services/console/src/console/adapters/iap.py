"""Identity-Aware Proxy: who is the operator, from the signed header IAP adds to every request.

IAP signs ``X-Goog-IAP-JWT-Assertion`` (ES256) with keys published at ``IAP_CERTS_URL``; the audience is
the backend service (``/projects/<number>/global/backendServices/<id>``). A request that bypassed the
load balancer has no valid assertion and is refused, so the console never trusts a plain e-mail header.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests
from google.auth import exceptions, jwt

IAP_HEADER = "X-Goog-IAP-JWT-Assertion"
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"
IAP_ISSUER = "https://cloud.google.com/iap"
CertsFetcher = Callable[[], dict[str, str]]


def fetch_iap_certs() -> dict[str, str]:
    response = requests.get(IAP_CERTS_URL, timeout=5)
    response.raise_for_status()
    return response.json()


class IapVerifier:
    def __init__(self, audience: str, fetch_certs: CertsFetcher = fetch_iap_certs, ttl: float = 3600) -> None:
        self.audience = audience
        self._fetch = fetch_certs
        self._ttl = ttl
        self._certs: dict[str, str] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _current_certs(self, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if refresh or not self._certs or time.monotonic() - self._fetched > self._ttl:
                self._certs = self._fetch()
                self._fetched = time.monotonic()
            return self._certs

    def operator(self, assertion: str | None) -> str | None:
        """The signed-in Google identity's e-mail, or None when the assertion is missing or invalid."""
        if not assertion:
            return None
        for refresh in (False, True):  # a key rotated since the last fetch: fetch once more
            try:
                claims = jwt.decode(assertion, certs=self._current_certs(refresh), audience=self.audience)
            except (exceptions.GoogleAuthError, ValueError, requests.RequestException):
                continue
            if claims.get("iss") != IAP_ISSUER or not claims.get("email"):
                return None
            return str(claims["email"])
        return None
