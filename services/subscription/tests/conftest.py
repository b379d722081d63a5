"""Fixtures for the subscription service's own tests: the embedded backend in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from coursebridge.backends import open_bus, open_store
from coursebridge.config import PlatformSettings
from coursebridge.topology import TOPOLOGY
from subscription.config import SubscriptionSettings
from subscription.testing import Clock

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def platform(tmp_path: Path) -> PlatformSettings:
    return PlatformSettings(backend="embedded", data_dir=tmp_path, service_name="subscription")


@pytest.fixture
def settings(platform: PlatformSettings) -> SubscriptionSettings:
    return SubscriptionSettings(platform=platform, admin_token=ADMIN_TOKEN)


@pytest.fixture
def store(platform: PlatformSettings):
    store = open_store(platform, "subscription")
    yield store
    store.close()


@pytest.fixture
def bus(platform: PlatformSettings):
    bus = open_bus(platform)
    bus.provision(TOPOLOGY)
    yield bus
    bus.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()
