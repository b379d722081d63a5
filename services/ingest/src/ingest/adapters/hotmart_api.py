"""Hotmart's REST API, as reconciliation and backfill use it: the only module that speaks HTTP to Hotmart.

* OAuth2 client credentials: the token is cached until shortly before ``expires_in`` runs out, and a 401
  (``token_expired``/``invalid_token``) mints a new one once, as Hotmart advises.
* 500 calls per minute for the whole account: a sliding-window limiter keeps this client under its share
  (``calls_per_minute``), and a 429 anyway (another client on the same account) waits for
  ``RateLimit-Reset`` and retries.
* Cursor pagination (``max_results`` + ``page_token`` until ``next_page_token`` is absent).
* 5xx (502 = the query ran past 30 s) are retried a few times with backoff, then raised.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import structlog
from prometheus_client import Counter

log = structlog.get_logger(__name__)

API_CALLS = Counter(
    "coursebridge_hotmart_api_calls_total",
    "Calls to Hotmart's REST API by endpoint and status",
    ["endpoint", "status"],
)
SALES_HISTORY = "/payments/api/v1/sales/history"
SUBSCRIPTIONS = "/payments/api/v1/subscriptions"
PAGE_SIZE = 500
TOKEN_MARGIN_SECONDS = 60
Params = Mapping[str, Any]


class HotmartApiError(Exception):
    """Hotmart answered with an error we cannot retry away (or kept failing); nothing was assumed."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class HotmartApiSettings:
    client_id: str
    client_secret: str
    basic: str  # base64(client_id:client_secret), as Hotmart's credentials page shows it
    api_base_url: str = "https://developers.hotmart.com"
    auth_url: str = "https://api-sec-vlc.hotmart.com/security/oauth/token"
    calls_per_minute: int = 450  # of Hotmart's 500: headroom for other tools on the same account
    timeout_seconds: float = 35.0  # Hotmart stops a query after 30 s (502)


class RateLimiter:
    """At most ``limit`` calls in any ``window`` seconds (sliding window); ``acquire`` waits its turn."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._calls and self._calls[0] <= now - self.window:
                    self._calls.popleft()
                if len(self._calls) < self.limit:
                    self._calls.append(now)
                    return
                wait = self._calls[0] + self.window - now
            self.waited += wait
            self._sleep(wait)

    def hold(self, seconds: float) -> None:
        """The server said to wait (429): nobody calls for ``seconds``."""
        self.waited += seconds
        self._sleep(seconds)


class HotmartApi:
    def __init__(
        self,
        settings: HotmartApiSettings,
        *,
        session: requests.Session | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 5,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.settings = settings
        self._session = session or requests.Session()
        self._limiter = limiter or RateLimiter(settings.calls_per_minute, clock=clock, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
        self._max_retries = max_retries
        self.page_size = page_size
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()
        self.calls = 0
        self.throttled = 0

    # --- token --------------------------------------------------------------------------------------

    def token(self) -> str:
        with self._lock:
            if self._token is not None and self._clock() < self._token_expires:
                return self._token
            response = self._send(
                "POST",
                self.settings.auth_url,
                "token",
                params={
                    "grant_type": "client_credentials",
                    "client_id": self.settings.client_id,
                    "client_secret": self.settings.client_secret,
                },
                headers={"Authorization": f"Basic {self.settings.basic}", "Content-Type": "application/json"},
            )
            if response.status_code != 200:
                raise _error(response, "could not obtain a Hotmart access token")
            body = response.json()
            lifetime = float(body.get("expires_in") or 3600)
            self._token = str(body["access_token"])
            self._token_expires = self._clock() + max(1.0, lifetime - TOKEN_MARGIN_SECONDS)
            return self._token

    def forget_token(self) -> None:
        with self._lock:
            self._token = None

    # --- calls --------------------------------------------------------------------------------------

    def get(self, path: str, params: Params) -> Any:
        """One GET with a bearer token; a 401 re-mints the token once."""
        for attempt in (1, 2):
            response = self._send(
                "GET",
                self.settings.api_base_url.rstrip("/") + path,
                path,
                params=params,
                headers={"Authorization": f"Bearer {self.token()}", "Accept": "application/json"},
            )
            if response.status_code == 401 and attempt == 1:
                self.forget_token()
                continue
            if response.status_code != 200:
                raise _error(response, f"GET {path} failed")
            return response.json()
        raise HotmartApiError(f"GET {path} unauthorised after a new token", 401)  # pragma: no cover

    def paginate(self, path: str, params: Params, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing, following ``next_page_token`` to the end."""
        for page in self.pages(path, params, page_size=page_size):
            yield from page[0]

    def pages(
        self, path: str, params: Params, *, page_size: int | None = None, page_token: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """(items, token of the next page) page by page: a resumable caller stores the token."""
        while True:
            query = {**params, "max_results": page_size or self.page_size}
            if page_token:
                query["page_token"] = page_token
            body = self.get(path, query)
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise HotmartApiError(f"GET {path}: no items list in the answer")
            page_token = (body.get("page_info") or {}).get("next_page_token") or None
            yield items, page_token
            if page_token is None:
                return

    def _send(self, method: str, url: str, endpoint: str, **kwargs: Any) -> requests.Response:
        """Send within the rate limit, waiting out 429s and retrying 5xx/connection errors with backoff."""
        backoff = 1.0
        for attempt in range(1, self._max_retries + 2):
            self._limiter.acquire()
            self.calls += 1
            try:
                response = self._session.request(method, url, timeout=self.settings.timeout_seconds, **kwargs)
            except requests.RequestException as failure:
                API_CALLS.labels(endpoint, "error").inc()
                if attempt > self._max_retries:
                    raise HotmartApiError(f"{endpoint}: {type(failure).__name__}") from failure
                self._sleep(backoff)
                backoff = min(30.0, backoff * 2)
                continue
            API_CALLS.labels(endpoint, str(response.status_code)).inc()
            if response.status_code == 429 and attempt <= self._max_retries:
                self.throttled += 1
                wait = _reset_seconds(response)
                log.warning("hotmart_api.throttled", endpoint=endpoint, wait_seconds=wait)
                self._limiter.hold(wait)
                continue
            if response.status_code >= 500 and attempt <= self._max_retries:
                log.warning("hotmart_api.server_error", endpoint=endpoint, status=response.status_code)
                self._sleep(backoff)
                backoff = min(30.0, backoff * 2)
                continue
            return response
        raise HotmartApiError(f"{endpoint}: gave up after {self._max_retries} retries")  # pragma: no cover

    def close(self) -> None:
        self._session.close()


def _reset_seconds(response: requests.Response) -> float:
    for header in ("RateLimit-Reset", "Retry-After"):
        value = response.headers.get(header, "").strip()
        try:
            seconds = float(value)
        except ValueError:
            continue
        if seconds > 10**9:  # an epoch, not a delay
            seconds -= time.time()
        return min(60.0, max(1.0, seconds))
    return 5.0


def _error(response: requests.Response, message: str) -> HotmartApiError:
    code = None
    try:
        body = response.json()
        code = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        pass
    return HotmartApiError(
        f"{message}: HTTP {response.status_code} {code or ''}".strip(), response.status_code, code
    )
