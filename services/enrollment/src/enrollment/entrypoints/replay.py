"""Replay enrollment's dead letters, each at most once: ``python -m enrollment.entrypoints.replay``.

Options: ``--subscription <name>`` (default: both of enrollment's), ``--max N``, ``--idle SECONDS``.

1. Whatever still waits in the hold (``<name>.dead-letter.hold``: the worker's keeper normally empties it
   at once) is moved into enrollment's ``deadletters`` kind, until the hold is quiet for ``--idle`` s.
2. The ids of every *held* letter are taken once; each letter is handled once by enrollment's own handler
   (``coursebridge.deadletters.replay``): success marks it ``replayed``, failure keeps it held with the new
   reason. Nothing is republished, so a poison message cannot come round again in the same run.
3. One JSON line per letter, then a summary ``{"replayed": n, "failed": m, ...}``. Exit 0; 1 when the
   store or the bus cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import structlog

from coursebridge.backends import open_bus, open_store
from coursebridge.deadletters import ReplayOutcome, keeper, replay_all
from coursebridge.events import Event
from coursebridge.ports import Delivery, DocumentStore, MessageBus
from coursebridge.runtime.logging import configure_logging
from coursebridge.topology import TOPOLOGY, Topology
from enrollment.config import EnrollmentSettings

log = structlog.get_logger(__name__)
SUBSCRIPTIONS = ("enrollment.payments", "enrollment.subscriptions")


@dataclass
class ReplayResult:
    kept: int = 0
    outcomes: list[ReplayOutcome] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(outcome.outcome for outcome in self.outcomes))


def drain_hold(
    bus: MessageBus,
    store: DocumentStore,
    subscription: str,
    *,
    idle_seconds: float = 2.0,
    timeout: float = 120.0,
    topology: Topology = TOPOLOGY,
) -> int:
    """Move the hold's messages into the store; returns how many arrived. Bounded by ``timeout``."""
    source = topology.subscription(subscription)  # KeyError for an unknown subscription
    keep = keeper(store, subscription)
    lock = threading.Lock()
    kept = [0]
    last_activity = [time.monotonic()]

    def handler(event: Event, delivery: Delivery) -> None:
        keep(event, delivery)
        with lock:
            kept[0] += 1
            last_activity[0] = time.monotonic()

    runner = bus.subscribe(source.hold_subscription, handler, max_in_flight=1)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and time.monotonic() - last_activity[0] < idle_seconds:
            time.sleep(0.05)
    finally:
        runner.stop()
    return kept[0]


def replay(
    bus: MessageBus | None,
    store: DocumentStore,
    subscriptions: tuple[str, ...] = SUBSCRIPTIONS,
    *,
    max_messages: int | None = None,
    idle_seconds: float = 2.0,
    timeout: float = 120.0,
) -> ReplayResult:
    """Drain the holds (when a bus is given), then handle every held letter once."""
    from enrollment.bootstrap import replay_handlers

    result = ReplayResult()
    handlers = replay_handlers(store)
    for subscription in subscriptions:
        if bus is not None:
            result.kept += drain_hold(bus, store, subscription, idle_seconds=idle_seconds, timeout=timeout)
        left = None if max_messages is None else max_messages - len(result.outcomes)
        if left is not None and left <= 0:
            break
        result.outcomes += replay_all(store, handlers, subscription=subscription, max_messages=left)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscription", help="one of: " + ", ".join(SUBSCRIPTIONS) + " (default: both)")
    parser.add_argument("--max", type=int, default=None, help="replay at most N letters")
    parser.add_argument("--idle", type=float, default=2.0, help="hold quiet this long = drained")
    args = parser.parse_args(argv)
    if args.subscription and args.subscription not in SUBSCRIPTIONS:
        print(
            f"unknown subscription {args.subscription!r}; known: {', '.join(SUBSCRIPTIONS)}", file=sys.stderr
        )
        return 2
    settings = EnrollmentSettings.from_env()
    configure_logging("enrollment-replay", settings.platform.log_level)
    try:
        store = open_store(settings.platform, "enrollment")
        bus = open_bus(settings.platform)
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}), file=sys.stderr)
        return 1
    try:
        subscriptions = (args.subscription,) if args.subscription else SUBSCRIPTIONS
        result = replay(bus, store, subscriptions, max_messages=args.max, idle_seconds=args.idle)
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}), file=sys.stderr)
        return 1
    finally:
        bus.close()
        store.close()
    for outcome in result.outcomes:
        print(json.dumps(outcome.to_json()))
    print(json.dumps({"moved_from_hold": result.kept, "letters": len(result.outcomes), **result.counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
