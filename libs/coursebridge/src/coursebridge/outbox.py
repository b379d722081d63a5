"""Transactional outbox: store a change and the events announcing it in one transaction; publish later.

A caller adds entries inside its own store transaction (``Outbox.add``), so either the change and its
events are both kept or neither is, and no request ever waits on the bus. ``OutboxRelay`` (a worker loop)
publishes the entries and deletes them only after the bus confirmed: a crash in between republishes with
the same CloudEvent id, which consumers deduplicate. While the bus is down, entries wait.

Order per ordering key comes from the store, never from a clock: ``add`` appends the entry to its key's
queue document (``<kind>-keys``) in the same transaction, so two ingest pods adding to one key are
serialised by the store and the queue holds the entries in commit order. The relay publishes each key's
queue from its head; keys are independent and go in parallel. (The ``sequence`` stamp on an entry is only
a rough age used to pick which keys to look at first.)

An entry the bus can never take (it breaks its contract, or Pub/Sub refuses it: ``PublishRejected``) is
moved aside to ``<kind>-quarantine`` with the reason, logged and counted, and the key's later entries go
on; it never blocks its key or backs the whole relay off.

``OutboxRelay.run`` holds a lease (``coursebridge.lease``) in the same store, so exactly one replica relays
an outbox whatever the replica count; the others stand by and take over when it stops or dies.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from coursebridge.events import Event, InvalidEvent, validate_event
from coursebridge.events.envelope import format_time, parse_time, utc_now
from coursebridge.lease import Lease, singleton
from coursebridge.ports import (
    Document,
    DocumentStore,
    MessageBus,
    PublishRejected,
    Transaction,
)
from coursebridge.runtime.metrics import EVENTS_PUBLISHED

log = structlog.get_logger(__name__)

OUTBOX_PENDING_AGE = Gauge(
    "coursebridge_outbox_oldest_age_seconds", "Age of the oldest outbox entry not yet published", ["service"]
)
OUTBOX_RETRIES = Counter("coursebridge_outbox_publish_failures_total", "Publishes to retry", ["service"])
OUTBOX_QUARANTINED = Counter(
    "coursebridge_outbox_quarantined_total",
    "Outbox entries the bus can never take, moved aside to <kind>-quarantine",
    ["service"],
)

OUTBOX_KIND = "outbox"
KEYS_SUFFIX = "-keys"
QUARANTINE_SUFFIX = "-quarantine"
RELAY_LEASE_TTL = float(os.environ.get("COURSEBRIDGE_RELAY_LEASE_SECONDS") or 30.0)  # standby takeover
STANDBY_POLL_SECONDS = 2.0

_last_sequence = 0
_sequence_lock = threading.Lock()


def next_sequence() -> int:
    """Nanosecond stamp, increasing within a process: a rough age across keys, never the order of a key."""
    global _last_sequence
    with _sequence_lock:
        _last_sequence = max(time.time_ns(), _last_sequence + 1)
        return _last_sequence


def key_doc_id(ordering_key: str) -> str:
    """A document id for any key (Firestore ids may not contain ``/`` and are size-limited)."""
    return "k-" + hashlib.sha256(ordering_key.encode("utf-8")).hexdigest()[:40]


class UnpublishableEntry(Exception):
    """An outbox entry that no retry can publish (broken data, or refused by the bus)."""


# The key queues an ``add`` already read in a transaction: a second ``add`` for the same key in the same
# transaction must extend that copy (a read would not see this transaction's own write on Firestore).
_queues_in_transaction: weakref.WeakKeyDictionary[Transaction, dict[str, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


class Outbox:
    def __init__(self, store: DocumentStore, kind: str = OUTBOX_KIND) -> None:
        self.store = store
        self.kind = kind

    @property
    def keys_kind(self) -> str:
        return self.kind + KEYS_SUFFIX

    @property
    def quarantine_kind(self) -> str:
        return self.kind + QUARANTINE_SUFFIX

    def add(self, tx: Transaction, topic: str, event: Event, ordering_key: str | None) -> None:
        """Write the entry with the caller's transaction (validated now, so bad data fails the change)."""
        validate_event(event)
        entry_id = "ob-" + event.id
        tx.create(
            self.kind,
            entry_id,
            {
                "topic": topic,
                "ordering_key": ordering_key,
                "created_at": format_time(utc_now()),
                "sequence": next_sequence(),
                "event": event.to_json(),
            },
        )
        if ordering_key:
            queues = _queues_in_transaction.setdefault(tx, {})
            queue = queues.get(ordering_key)
            if queue is None:
                found = tx.get(self.keys_kind, key_doc_id(ordering_key))
                queue = found or {"key": ordering_key, "pending": []}
                queues[ordering_key] = queue
            queue["pending"] = [*queue["pending"], entry_id]
            tx.set(self.keys_kind, key_doc_id(ordering_key), queue)

    def pending(self, limit: int = 100) -> list[Document]:
        return self.store.query(self.kind, order_by="sequence", limit=limit)

    def quarantined(self, limit: int = 100) -> list[Document]:
        """Entries moved aside, with ``reason`` and ``quarantined_at``: for an operator to fix or drop."""
        return self.store.query(self.quarantine_kind, limit=limit)


@dataclass
class RelayRound:
    published: int = 0
    deferred: int = 0
    quarantined: int = 0
    errors: list[str] = field(default_factory=list)


PublishedHook = Callable[[Transaction, list[tuple[Document, str]]], None]
"""Called inside the transaction that removes published entries, with (entry, message id) pairs; it must
do its reads before its writes (Firestore's rule). Ingest uses it to mark its webhooks published."""


@dataclass
class _KeyOutcome:
    published: list[tuple[Document, str]] = field(default_factory=list)
    quarantined: list[tuple[Document, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class OutboxRelay:
    def __init__(
        self,
        store: DocumentStore,
        bus: MessageBus,
        *,
        kind: str = OUTBOX_KIND,
        service: str | None = None,
        batch_size: int = 100,
        parallelism: int = 4,
        on_published: PublishedHook | None = None,
    ) -> None:
        self._outbox = Outbox(store, kind)
        self._store = store
        self._bus = bus
        self._service = service or store.owner
        self._batch_size = batch_size
        self._on_published = on_published
        self._pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="outbox")

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    # --- one round -----------------------------------------------------------------------------------

    def relay_once(self, *, budget: float | None = None) -> RelayRound:
        """Publish what is pending; start no new publish after ``budget`` seconds (a lease's term)."""
        deadline = None if budget is None else time.monotonic() + budget
        entries = self._outbox.pending(self._batch_size)
        round_ = RelayRound()
        if not entries:
            OUTBOX_PENDING_AGE.labels(self._service).set(0)
            return round_
        oldest = parse_time(entries[0].data["created_at"])
        OUTBOX_PENDING_AGE.labels(self._service).set(max(0.0, (datetime.now(UTC) - oldest).total_seconds()))
        groups: OrderedDict[str, list[Document]] = OrderedDict()
        for entry in entries:
            key = entry.data.get("ordering_key") or "\0" + entry.id  # unordered entries are independent
            groups.setdefault(key, []).append(entry)
        bus_down = threading.Event()
        outcomes = list(
            self._pool.map(lambda item: self._relay_key(item[0], item[1], bus_down, deadline), groups.items())
        )
        published = [pair for outcome in outcomes for pair in outcome.published]
        quarantined = [pair for outcome in outcomes for pair in outcome.quarantined]
        if published or quarantined:
            self._store.transaction(lambda tx: self._settle(tx, published, quarantined))
        for entry, reason in quarantined:
            OUTBOX_QUARANTINED.labels(self._service).inc()
            event = entry.data.get("event") or {}
            log.error(
                "outbox.quarantined",
                entry=entry.id,
                event_type=event.get("type") if isinstance(event, dict) else None,
                topic=entry.data.get("topic"),
                reason=reason[:300],
            )
        round_.published = len(published)
        round_.quarantined = len(quarantined)
        round_.errors = [error for outcome in outcomes for error in outcome.errors]
        round_.deferred = max(0, len(entries) - round_.published - round_.quarantined)
        return round_

    def _relay_key(
        self, key: str, batch: list[Document], bus_down: threading.Event, deadline: float | None
    ) -> _KeyOutcome:
        outcome = _KeyOutcome()
        for entry in self._queue(key, batch):
            if bus_down.is_set() or (deadline is not None and time.monotonic() > deadline):
                break
            try:
                message_id = self._publish(entry)
            except UnpublishableEntry as error:
                outcome.quarantined.append((entry, str(error)))
                continue  # moved aside: the key's later entries go on
            except Exception as error:  # BusUnavailable, or the store failed to give an entry
                OUTBOX_RETRIES.labels(self._service).inc()
                bus_down.set()  # the bus is down for every key: stop this round everywhere
                outcome.errors.append(f"{entry.id}: {type(error).__name__}: {error}")
                break
            outcome.published.append((entry, message_id))
        return outcome

    def _queue(self, key: str, batch: list[Document]) -> list[Document]:
        """The key's entries in publish order, from its queue document (entries of older code go first)."""
        if key.startswith("\0"):
            return batch
        queue = self._store.get(self._outbox.keys_kind, key_doc_id(key)) or {}
        order: list[str] = list(queue.get("pending") or [])
        listed = set(order)
        in_batch = {entry.id: entry for entry in batch}
        ordered = [entry for entry in batch if entry.id not in listed]  # written before queues existed
        for entry_id in order[: self._batch_size]:
            entry = in_batch.get(entry_id)
            if entry is None:  # beyond this batch: fetch it, the key's order does not wait for the batch
                data = self._store.get(self._outbox.kind, entry_id)
                if data is None:
                    continue  # settled a moment ago by a relay that no longer holds the lease
                entry = Document(entry_id, data)
            ordered.append(entry)
        return ordered

    def _publish(self, entry: Document) -> str:
        try:
            event = Event.from_json(entry.data["event"])
            validate_event(event)
            topic = entry.data["topic"]
        except (InvalidEvent, ValueError, KeyError, TypeError) as error:
            raise UnpublishableEntry(f"{type(error).__name__}: {error}") from error
        try:
            message_id = self._bus.publish(topic, event, ordering_key=entry.data.get("ordering_key"))
        except (InvalidEvent, PublishRejected) as error:
            raise UnpublishableEntry(f"{type(error).__name__}: {error}") from error
        EVENTS_PUBLISHED.labels(self._service, topic, event.type).inc()
        return message_id

    def _settle(
        self,
        tx: Transaction,
        published: list[tuple[Document, str]],
        quarantined: list[tuple[Document, str]],
    ) -> None:
        keys_kind = self._outbox.keys_kind
        settled = [entry for entry, _ in published] + [entry for entry, _ in quarantined]
        by_key: dict[str, set[str]] = {}
        for entry in settled:
            if entry.data.get("ordering_key"):
                by_key.setdefault(entry.data["ordering_key"], set()).add(entry.id)
        queues = {key: tx.get(keys_kind, key_doc_id(key)) for key in by_key}  # reads first
        if self._on_published is not None and published:
            self._on_published(tx, published)
        now = format_time(utc_now())
        for entry, reason in quarantined:
            tx.set(
                self._outbox.quarantine_kind,
                entry.id,
                {**entry.data, "reason": reason, "quarantined_at": now},
            )
        for entry in settled:
            tx.delete(self._outbox.kind, entry.id)
        for key, done in by_key.items():
            queue = queues[key]
            if queue is None:
                continue
            left = [entry_id for entry_id in queue.get("pending") or [] if entry_id not in done]
            if left:
                tx.set(keys_kind, key_doc_id(key), {**queue, "pending": left})
            else:
                tx.delete(keys_kind, key_doc_id(key))

    # --- the loop --------------------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        poll_interval: float = 0.2,
        max_backoff: float = 30.0,
        *,
        exclusive: bool = True,
        lease_ttl: float = RELAY_LEASE_TTL,
        holder: str | None = None,
    ) -> None:
        """Relay until ``stop`` is set, backing off while the bus or the store fails.

        With ``exclusive`` (the default) the relay runs only while it holds the outbox's lease
        (``outbox-relay.<kind>`` in the same store), so one replica relays and the others stand by.
        """
        backoff = poll_interval

        def work_round(budget: float | None) -> float:
            nonlocal backoff
            try:
                round_ = self.relay_once(budget=budget)
            except Exception as error:
                log.warning("outbox.round_failed", error=f"{type(error).__name__}: {error}"[:300])
                round_ = RelayRound(errors=[str(error)])
            if round_.errors:
                log.warning(
                    "outbox.publish_deferred", deferred=round_.deferred, first_error=round_.errors[0][:300]
                )
                backoff = min(max_backoff, backoff * 2)
                return backoff
            backoff = poll_interval
            return 0.0 if round_.published + round_.quarantined >= self._batch_size else poll_interval

        if not exclusive:
            while not stop.is_set():
                wait = work_round(None)
                if wait:
                    stop.wait(wait)
            return
        lease = Lease(self._store, f"outbox-relay.{self._outbox.kind}", holder=holder, ttl=lease_ttl)

        def term() -> float:
            """Relay rounds for a third of the lease, then hand back to renew it (not a store write per
            round). No publish starts after that third, so the last round ends (bus timeouts included)
            well before another replica could take the lease over."""
            end = time.monotonic() + lease_ttl / 3
            while not stop.is_set():
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return 0.0
                wait = work_round(remaining)
                if wait >= end - time.monotonic():
                    return wait
                if wait:
                    stop.wait(wait)
            return 0.0

        # Standby replicas look at the lease every couple of seconds; a released lease is taken that soon.
        singleton(lease, term, idle=max(poll_interval, STANDBY_POLL_SECONDS))(stop)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def relay_loop(
    relay: OutboxRelay, *, poll_interval: float = 0.2, close: bool = True
) -> Callable[[threading.Event], None]:
    """The worker loop of a relay (``Worker(loops={"outbox-relay": relay_loop(relay)})``): exclusive, and
    the relay's threads are released when the worker stops."""

    def loop(stop: threading.Event) -> None:
        try:
            relay.run(stop, poll_interval=poll_interval)
        finally:
            if close:
                relay.close()

    return loop
