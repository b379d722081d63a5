"""Move dead-lettered messages back: ``python -m enrollment.entrypoints.replay --subscription <name>``.

Options: ``--max N``, ``--idle SECONDS``. Pulls from ``<name>.dead-letter.hold`` and republishes each
event, unchanged (same CloudEvent id, so
consumers that already handled it deduplicate), to the topic of subscription ``<name>`` with its original
ordering key, then acks it. Stops after ``--max`` messages or when nothing arrived for ``--idle`` seconds.
Works on both backends through the bus port. Note: republishing to the topic reaches every subscription
of that topic; the other consumers absorb the duplicate by event id.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field

import structlog

from coursebridge.backends import open_bus
from coursebridge.config import PlatformSettings
from coursebridge.events import Event
from coursebridge.ports import Delivery, MessageBus
from coursebridge.runtime.logging import configure_logging
from coursebridge.topology import TOPOLOGY, Topology

log = structlog.get_logger(__name__)


@dataclass
class ReplayResult:
    replayed: int = 0
    event_ids: list[str] = field(default_factory=list)


def replay(
    bus: MessageBus,
    subscription: str,
    *,
    max_messages: int | None = None,
    idle_seconds: float = 2.0,
    timeout: float = 600.0,
    topology: Topology = TOPOLOGY,
) -> ReplayResult:
    source = topology.subscription(subscription)  # KeyError for an unknown subscription
    topic = source.topic
    result = ReplayResult()
    lock = threading.Lock()
    done = threading.Event()
    last_activity = [time.monotonic()]

    def handler(event: Event, delivery: Delivery) -> None:
        with lock:
            if max_messages is not None and result.replayed >= max_messages:
                done.set()
                raise RuntimeError("replay limit reached; left on hold")  # nacked: stays on hold
            bus.publish(topic, event, ordering_key=delivery.ordering_key)
            result.replayed += 1
            result.event_ids.append(event.id)
            last_activity[0] = time.monotonic()
            log.info("replay.republished", event_type=event.type, event_id=event.id, topic=topic)
            if max_messages is not None and result.replayed >= max_messages:
                done.set()

    runner = bus.subscribe(source.hold_subscription, handler, max_in_flight=1)
    deadline = time.monotonic() + timeout
    try:
        while not done.is_set() and time.monotonic() < deadline:
            if time.monotonic() - last_activity[0] >= idle_seconds:
                break
            done.wait(0.05)
    finally:
        runner.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscription", required=True, help="e.g. enrollment.payments")
    parser.add_argument("--max", type=int, default=None, help="replay at most N messages")
    parser.add_argument("--idle", type=float, default=2.0, help="stop after this many quiet seconds")
    args = parser.parse_args(argv)
    settings = PlatformSettings.from_env("enrollment-replay")
    configure_logging("enrollment-replay", settings.log_level)
    try:
        TOPOLOGY.subscription(args.subscription)
    except KeyError:
        known = ", ".join(s.name for s in TOPOLOGY.subscriptions)
        print(f"unknown subscription {args.subscription!r}; known: {known}", file=sys.stderr)
        return 2
    bus = open_bus(settings)
    try:
        result = replay(bus, args.subscription, max_messages=args.max, idle_seconds=args.idle)
    finally:
        bus.close()
    hold = TOPOLOGY.subscription(args.subscription).hold_subscription
    print(f"replayed {result.replayed} message(s) from {hold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
