"""The outbox relay: publish accepted webhooks to the payments topic, in order per purchase.

Entries are read oldest first. Entries of one ordering key are published one after another; different
keys go out in parallel. When the bus is down an entry stays in the outbox, and so do the later entries
of its key (publishing them first would break their order); the next round tries again. Entries are
removed only after Pub/Sub confirmed the publish, so a crash can only cause a republish, which consumers
absorb (the CloudEvent id is stable).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter, Gauge

from coursebridge.events import Event
from coursebridge.events.envelope import format_time, parse_time, utc_now
from coursebridge.ports import BusUnavailable, Document, DocumentStore, MessageBus, Transaction
from coursebridge.runtime.metrics import EVENTS_PUBLISHED
from ingest.service_layer.intake import OUTBOX, WEBHOOKS

log = structlog.get_logger(__name__)

OUTBOX_OLDEST_AGE = Gauge(
    "coursebridge_ingest_outbox_oldest_age_seconds", "Age of the oldest accepted webhook not yet published"
)
RELAY_FAILURES = Counter("coursebridge_ingest_relay_failures_total", "Publishes the relay must retry")


@dataclass
class RelayRound:
    published: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)


class OutboxRelay:
    def __init__(self, store: DocumentStore, bus: MessageBus, *, batch_size: int = 100, parallelism: int = 8):
        self._store = store
        self._bus = bus
        self._batch_size = batch_size
        self._pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="relay")

    def relay_once(self) -> RelayRound:
        entries = self._store.query(OUTBOX, order_by="sequence", limit=self._batch_size)
        round_ = RelayRound()
        if not entries:
            OUTBOX_OLDEST_AGE.set(0)
            return round_
        oldest = parse_time(entries[0].data["received_at"])
        OUTBOX_OLDEST_AGE.set(max(0.0, (datetime.now(UTC) - oldest).total_seconds()))

        by_key: OrderedDict[str, list[Document]] = OrderedDict()
        for entry in entries:
            by_key.setdefault(entry.data["ordering_key"], []).append(entry)
        published: list[tuple[str, str]] = []
        for done, errors in self._pool.map(self._publish_in_order, by_key.values()):
            published += done
            round_.errors += errors
        round_.published = len(published)
        round_.deferred = len(entries) - len(published)
        if published:
            self._store.transaction(lambda tx: _mark_published(tx, published))
        return round_

    def _publish_in_order(self, entries: list[Document]) -> tuple[list[tuple[str, str]], list[str]]:
        done: list[tuple[str, str]] = []
        for entry in entries:
            event = Event.from_json(entry.data["event"])
            topic = entry.data["topic"]
            try:
                message_id = self._bus.publish(topic, event, ordering_key=entry.data["ordering_key"])
            except Exception as error:  # BusUnavailable, or a stored event that no longer validates
                RELAY_FAILURES.inc()
                if not isinstance(error, BusUnavailable):
                    log.error(
                        "relay.unpublishable", event_type=event.type, event_id=event.id, error=str(error)
                    )
                return done, [f"{event.type} {event.id}: {error}"]
            EVENTS_PUBLISHED.labels("ingest", topic, event.type).inc()
            done.append((entry.id, message_id))
        return done, []

    def run(self, stop: threading.Event, poll_interval: float = 0.2, max_backoff: float = 30.0) -> None:
        """Relay until ``stop`` is set; back off while the bus or the store is failing."""
        backoff = poll_interval
        while not stop.is_set():
            try:
                round_ = self.relay_once()
            except Exception as error:
                log.warning("relay.round_failed", error=f"{type(error).__name__}: {error}")
                round_ = RelayRound(errors=[str(error)])
            if round_.errors:
                log.warning(
                    "relay.publish_deferred", deferred=round_.deferred, first_error=round_.errors[0][:300]
                )
                backoff = min(max_backoff, backoff * 2)
                stop.wait(backoff)
                continue
            backoff = poll_interval
            if round_.published:
                log.info("relay.published", count=round_.published)
                if round_.published >= self._batch_size:
                    continue  # more waiting: no pause
            stop.wait(poll_interval)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _mark_published(tx: Transaction, published: list[tuple[str, str]]) -> None:
    now = format_time(utc_now())
    webhooks = {doc_id: tx.get(WEBHOOKS, doc_id) for doc_id, _ in published}  # reads before writes
    for doc_id, message_id in published:
        tx.delete(OUTBOX, doc_id)
        webhook = webhooks[doc_id]
        if webhook is not None:
            tx.set(
                WEBHOOKS,
                doc_id,
                {**webhook, "status": "published", "published_at": now, "message_id": message_id},
            )
