"""Shared fixtures of the enrollment service's tests.

Sections are owned by different parts of the service; append new fixtures in a section of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from enrollment.adapters.budget import CallBudget
from enrollment.adapters.rate_limit import RateLimiter
from enrollment.adapters.talentlms import TalentLmsClient
from enrollment.adapters.talentlms_platform import TalentLmsConfig, TalentLmsPlatform, build_talentlms
from enrollment.adapters.talentlms_v2 import TalentLmsV2Client
from talentlms_fake import STATE_EXTENSION, FakeServer, FakeState, create_app

# --- TalentLMS fake, served for real (owned by the TalentLMS adapter) ------------------------------------
#
# ``fake_lms``: the fake TalentLMS (demo courses 7, 9, 11, 12; 200 calls / 5 s) on a free 127.0.0.1 port in
# a background thread. ``fake_lms_factory(**create_app_kwargs)`` starts one with other settings (e.g.
# ``rate_limit=3, rate_window_seconds=60``, ``hourly_quota=5``, ``courses=[...]``, ``api_key=...``). Both
# stop at teardown. ``fake.client()`` / ``fake.v2_client()`` / ``fake.platform()`` are clients of it.

FAKE_LMS_API_KEY = "test-fake-talentlms-key"


@dataclass
class FakeLms:
    """A running fake: ``base_url`` (…/api/v1), ``api_key``, ``app``, ``state`` and test helpers."""

    server: FakeServer
    api_key: str
    _clients: list[Any] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def v2_base_url(self) -> str:
        return f"{self.server.url}/api/v2"

    @property
    def url(self) -> str:
        """The server root, where ``/_fake/...`` lives."""
        return self.server.url

    @property
    def app(self) -> Any:
        return self.server.app

    @property
    def state(self) -> FakeState:
        return self.server.app.extensions[STATE_EXTENSION]

    def set_failure(
        self, mode: str, seconds: float | None = None, count: int | None = None, endpoint: str | None = None
    ) -> None:
        """``"none" | "429" | "500" | "acted_500" | "slow"``; ``count`` calls affected (None: until
        changed); ``endpoint`` (a snapshot ``calls`` key) limits it to those calls."""
        self.state.set_failure(mode, seconds, count, endpoint)

    def snapshot(self) -> dict[str, Any]:
        """``GET /_fake/state`` over HTTP (users, courses, enrollments, calls by action, ...)."""
        response = requests.get(f"{self.url}/_fake/state", timeout=5)
        response.raise_for_status()
        return response.json()

    def add_user(
        self, email: str, login: str | None = None, first_name: str = "Ana", last_name: str = "Souza"
    ) -> str:
        """A user created behind the API's back (not counted); returns its id."""
        user = self.state.add_user(
            email=email,
            login=login or email.split("@", 1)[0],
            first_name=first_name,
            last_name=last_name,
            password="Fake-password-1",
        )
        return user["id"]

    def enrollments(self) -> set[tuple[str, str]]:
        return {(e["user_id"], e["course_id"]) for e in self.state.snapshot()["enrollments"]}

    def client(self, *, api_key: str | None = None, **kwargs: Any) -> TalentLmsClient:
        """A ``TalentLmsClient`` pointed at this fake (closed at teardown); kwargs as the client's."""
        client = TalentLmsClient(self.base_url, api_key or self.api_key, **kwargs)
        self._clients.append(client)
        return client

    def v2_client(self, *, budget: CallBudget | None = None, **kwargs: Any) -> TalentLmsV2Client:
        """A ``TalentLmsV2Client`` of this fake; its own unlimited budget unless one is given."""
        kwargs.setdefault("timeout", 5.0)
        client = TalentLmsV2Client(
            self.v2_base_url, self.api_key, budget=budget or CallBudget(hourly_quota=None), **kwargs
        )
        self._clients.append(client)
        return client

    def platform(self, **config: Any) -> TalentLmsPlatform:
        """The facade over this fake (``TalentLmsConfig`` fields as keyword arguments)."""
        config.setdefault("timeout", 5.0)
        config.setdefault("rate_limit_max_wait_seconds", 2.0)
        platform = build_talentlms(TalentLmsConfig(base_url=self.base_url, api_key=self.api_key, **config))
        self._clients.append(platform)
        return platform

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def fake_lms_factory() -> Iterator[Callable[..., FakeLms]]:
    running: list[FakeLms] = []

    def start(*, api_key: str = FAKE_LMS_API_KEY, **create_app_kwargs: Any) -> FakeLms:
        server = FakeServer(create_app(api_key, **create_app_kwargs)).start()
        fake = FakeLms(server, api_key)
        running.append(fake)
        return fake

    yield start
    for fake in running:
        fake.close_clients()
        fake.server.stop()


@pytest.fixture
def fake_lms(fake_lms_factory: Callable[..., FakeLms]) -> FakeLms:
    return fake_lms_factory()


@pytest.fixture
def lms_client(fake_lms: FakeLms) -> TalentLmsClient:
    """A client of ``fake_lms`` with its own generous limiter (1000 calls / s, 2 s max wait)."""
    return fake_lms.client(limiter=RateLimiter(1000, 1.0, max_wait=2.0), timeout=5.0)


# --- end of the TalentLMS fake section --------------------------------------------------------------------
