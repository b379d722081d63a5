"""Small operator commands shared by every deployment."""

from __future__ import annotations

from coursebridge.backends import open_bus
from coursebridge.config import PlatformSettings
from coursebridge.topology import TOPOLOGY


def provision_main() -> None:
    """Create the topics and subscriptions of ``TOPOLOGY`` on the configured bus (local stacks, emulators)."""
    settings = PlatformSettings.from_env("provision")
    bus = open_bus(settings)
    bus.provision(TOPOLOGY)
    bus.close()
    print(f"provisioned {len(TOPOLOGY.all_topics())} topics and {len(TOPOLOGY.subscriptions)} subscriptions")
