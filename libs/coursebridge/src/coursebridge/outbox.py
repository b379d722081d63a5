"""Transactional outbox: store a change and the events announcing it in one transaction; publish later.

A caller adds entries inside its own store transaction (``Outbox.add``), so either the change and its
events are both kept or neither is, and no request ever waits on the bus. ``OutboxRelay`` (a worker loop)
reads the entries oldest first, publishes the entries of one ordering key in order (keys in parallel) and
deletes them only after the bus confirmed: a crash in between republishes with the same CloudEvent id,
which consumers deduplicate. While the bus is down, an entry and the later entries of its key wait.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter, Gauge

from coursebridge.events import Event, validate_event
from coursebridge.events.envelope import format_time, parse_time, utc_now
from coursebridge.ports import BusUnavailable, Document, DocumentStore, MessageBus, Transaction
from coursebridge.runtime.metrics import EVENTS_PUBLISHED

log = structlog.get_logger(__name__)

OUTBOX_PENDING_AGE = Gauge(
    "coursebridge_outbox_oldest_age_seconds", "Age of the oldest outbox entry not yet published", ["service"]
)
OUTBOX_RETRIES = Counter("coursebridge_outbox_publish_failures_total", "Publishes to retry", ["service"])

OUTBOX_KIND = "outbox"

_last_sequence = 0
_sequence_lock = threading.Lock()


def next_sequence() -> int:
    """Nanosecond stamp, strictly increasing within a process: the publish order of the entries."""
    global _last_sequence
    with _sequence_lock:
        _last_sequence = max(time.time_ns(), _last_sequence + 1)
        return _last_sequence


class Outbox:
    def __init__(self, store: DocumentStore, kind: str = OUTBOX_KIND) -> None:
        self.store = store
        self.kind = kind

    def add(self, tx: Transaction, topic: str, event: Event, ordering_key: str | None) -> None:
        """Write the entry with the caller's transaction (validated now, so bad data fails the change)."""
        validate_event(event)
        tx.create(
            self.kind,
            "ob-" + event.id,
            {
                "topic": topic,
                "ordering_key": ordering_key,
                "created_at": format_time(utc_now()),
                "sequence": next_sequence(),
                "event": event.to_json(),
            },
        )

    def pending(self, limit: int = 100) -> list[Document]:
        return self.store.query(self.kind, order_by="sequence", limit=limit)


@dataclass
class RelayRound:
    published: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)


PublishedHook = Callable[[Transaction, list[tuple[Document, str]]], None]
"""Called inside the transaction that removes published entries, with (entry, message id) pairs; it must
do its reads before its writes (Firestore's rule). Ingest uses it to mark its webhooks published."""


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

    def relay_once(self) -> RelayRound:
        entries = self._outbox.pending(self._batch_size)
        round_ = RelayRound()
        if not entries:
            OUTBOX_PENDING_AGE.labels(self._service).set(0)
            return round_
        oldest = parse_time(entries[0].data["created_at"])
        OUTBOX_PENDING_AGE.labels(self._service).set(max(0.0, (datetime.now(UTC) - oldest).total_seconds()))
        groups: OrderedDict[str, list[Document]] = OrderedDict()
        for entry in entries:
            key = entry.data.get("ordering_key") or entry.id  # unordered entries are independent
            groups.setdefault(key, []).append(entry)
        done: list[tuple[Document, str]] = []
        for published, errors in self._pool.map(self._publish_group, groups.values()):
            done += published
            round_.errors += errors
        if done:
            self._store.transaction(lambda tx: self._settle(tx, done))
        round_.published = len(done)
        round_.deferred = len(entries) - len(done)
        return round_

    def _settle(self, tx: Transaction, done: list[tuple[Document, str]]) -> None:
        if self._on_published is not None:
            self._on_published(tx, done)
        for entry, _message_id in done:
            tx.delete(self._outbox.kind, entry.id)

    def _publish_group(self, entries: list[Document]) -> tuple[list[tuple[Document, str]], list[str]]:
        done: list[tuple[Document, str]] = []
        for entry in entries:
            event = Event.from_json(entry.data["event"])
            topic = entry.data["topic"]
            try:
                message_id = self._bus.publish(topic, event, ordering_key=entry.data.get("ordering_key"))
            except Exception as error:  # BusUnavailable, or an entry that no longer validates
                OUTBOX_RETRIES.labels(self._service).inc()
                if not isinstance(error, BusUnavailable):
                    log.error(
                        "outbox.unpublishable", event_type=event.type, event_id=event.id, error=str(error)
                    )
                return done, [f"{event.type} {event.id}: {error}"]
            EVENTS_PUBLISHED.labels(self._service, topic, event.type).inc()
            done.append((entry, message_id))
        return done, []

    def run(self, stop: threading.Event, poll_interval: float = 0.2, max_backoff: float = 30.0) -> None:
        """Relay until ``stop`` is set, backing off while the bus or the store fails."""
        backoff = poll_interval
        while not stop.is_set():
            try:
                round_ = self.relay_once()
            except Exception as error:
                log.warning("outbox.round_failed", error=f"{type(error).__name__}: {error}")
                round_ = RelayRound(errors=[str(error)])
            if round_.errors:
                log.warning(
                    "outbox.publish_deferred", deferred=round_.deferred, first_error=round_.errors[0][:300]
                )
                backoff = min(max_backoff, backoff * 2)
                stop.wait(backoff)
                continue
            backoff = poll_interval
            if round_.published >= self._batch_size:
                continue
            stop.wait(poll_interval)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
