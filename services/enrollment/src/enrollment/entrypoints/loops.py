"""The worker's singleton loops: each runs on one replica at a time, under its own lease.

- ``lms-dispatcher`` — ``Dispatcher.run_round`` (queue, batches, fan-out, course list, drift audit); new work
  queued by this process's bus handlers wakes it at once, so quiet-time latency is not a poll interval;
- ``outbox-relay``  — publishes enrollment's outcome and catalogue events, backing off while the bus fails.
"""

from __future__ import annotations

import threading

from coursebridge.lease import Lease, Loop, singleton
from coursebridge.outbox import OutboxRelay
from coursebridge.ports import DocumentStore
from enrollment.service_layer.dispatcher import Dispatcher

RELAY_BATCH = 100
MAX_RELAY_BACKOFF = 30.0


def dispatcher_loop(store: DocumentStore, dispatcher: Dispatcher, wake: threading.Event, ttl: float) -> Loop:
    def round_() -> float:
        wake.clear()
        return dispatcher.run_round()

    return singleton(Lease(store, "lms-dispatcher", ttl=ttl), round_, idle=0.5, wake=wake)


def relay_loop(store: DocumentStore, relay: OutboxRelay, poll: float, ttl: float) -> Loop:
    backoff = [poll]

    def round_() -> float:
        done = relay.relay_once()
        if done.errors:  # the bus is down or refuses an entry: back off, the entries wait in the outbox
            backoff[0] = min(MAX_RELAY_BACKOFF, backoff[0] * 2)
            return backoff[0]
        backoff[0] = poll
        return 0.0 if done.published >= RELAY_BATCH else poll

    return singleton(Lease(store, "outbox-relay", ttl=ttl), round_, idle=poll)
