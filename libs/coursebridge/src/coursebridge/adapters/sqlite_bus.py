"""Embedded message bus on SQLite: Pub/Sub's delivery semantics for a single machine.

Several processes share one WAL-mode file. Publishing fans a message out to one delivery row per
subscription of its topic; a subscriber *leases* rows (the ack deadline), runs the handler, then deletes
the row (ack) or pushes it back with exponential backoff (nack). An expired lease is a redelivery, exactly
as on Pub/Sub. Ordered subscriptions only hand out the oldest outstanding row of each ordering key, so a
failing message holds its key back until it succeeds or is dead-lettered.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from coursebridge.adapters.sqlite_base import SqliteDatabase
from coursebridge.events import Event, WireMessage, validate_event, validate_received
from coursebridge.ports import (
    DEAD_LETTER_REASON_ATTRIBUTE,
    BusUnavailable,
    Delivery,
    EventHandler,
    MessageBus,
    PermanentFailure,
    SubscriptionRunner,
)
from coursebridge.topology import Topology

log = structlog.get_logger(__name__)

_RETENTION_SECONDS = 7 * 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    ordered INTEGER NOT NULL,
    ack_deadline REAL NOT NULL,
    max_attempts INTEGER NOT NULL,
    min_backoff REAL NOT NULL,
    max_backoff REAL NOT NULL,
    dead_letter_topic TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    ordering_key TEXT,
    data BLOB NOT NULL,
    attributes TEXT NOT NULL,
    published_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    subscription TEXT NOT NULL,
    seq INTEGER NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
    ordering_key TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    lease_token TEXT,
    lease_expires REAL,
    PRIMARY KEY (subscription, seq)
);
CREATE INDEX IF NOT EXISTS deliveries_by_key ON deliveries (subscription, ordering_key, seq);
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (subscription, available_at);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (published_at);
"""


@dataclass(frozen=True)
class _SubscriptionSettings:
    name: str
    topic: str
    ordered: bool
    ack_deadline: float
    max_attempts: int
    min_backoff: float
    max_backoff: float
    dead_letter_topic: str | None


@dataclass(frozen=True)
class _Lease:
    seq: int
    message_id: str
    ordering_key: str | None
    attempt: int
    token: str
    message: WireMessage


class SqliteBus(MessageBus):
    def __init__(
        self,
        path: Path,
        *,
        poll_interval: float = 0.2,
        min_backoff: float | None = None,
        max_backoff: float | None = None,
    ) -> None:
        self._db = SqliteDatabase(path, _SCHEMA)
        self._poll_interval = poll_interval
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._runners: list[_SqliteRunner] = []

    # --- publishing -----------------------------------------------------------------------------------

    def publish(self, topic: str, event: Event, ordering_key: str | None = None) -> str:
        validate_event(event)
        message_id = uuid.uuid4().hex
        try:
            with self._db.write() as connection:
                self._insert(connection, topic, message_id, ordering_key, event.to_wire())
        except LookupError as error:
            raise BusUnavailable(str(error)) from error
        return message_id

    def _insert(
        self, connection, topic: str, message_id: str, ordering_key: str | None, message: WireMessage
    ):
        if connection.execute("SELECT 1 FROM topics WHERE name=?", (topic,)).fetchone() is None:
            raise LookupError(f"topic {topic!r} does not exist")
        now = time.time()
        cursor = connection.execute(
            "INSERT INTO messages (message_id, topic, ordering_key, data, attributes, published_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (message_id, topic, ordering_key or None, message.data, json.dumps(message.attributes), now),
        )
        connection.execute(
            "INSERT INTO deliveries (subscription, seq, ordering_key, available_at) "
            "SELECT name, ?, ?, ? FROM subscriptions WHERE topic=?",
            (cursor.lastrowid, ordering_key or None, now, topic),
        )
        if cursor.lastrowid % 1000 == 0:
            connection.execute(
                "DELETE FROM messages WHERE published_at < ? AND seq NOT IN (SELECT seq FROM deliveries)",
                (now - _RETENTION_SECONDS,),
            )

    # --- subscribing ----------------------------------------------------------------------------------

    def subscribe(
        self, subscription: str, handler: EventHandler, *, max_in_flight: int = 10
    ) -> SubscriptionRunner:
        settings = self._settings(subscription)
        runner = _SqliteRunner(self, settings, handler, max_in_flight)
        self._runners.append(runner)
        runner.start()
        return runner

    def _settings(self, subscription: str) -> _SubscriptionSettings:
        row = (
            self._db.connection()
            .execute(
                "SELECT name, topic, ordered, ack_deadline, max_attempts, min_backoff, max_backoff, "
                "dead_letter_topic FROM subscriptions WHERE name=?",
                (subscription,),
            )
            .fetchone()
        )
        if row is None:
            raise LookupError(f"subscription {subscription!r} does not exist")
        settings = _SubscriptionSettings(*row)
        return _SubscriptionSettings(
            name=settings.name,
            topic=settings.topic,
            ordered=bool(settings.ordered),
            ack_deadline=settings.ack_deadline,
            max_attempts=settings.max_attempts,
            min_backoff=self._min_backoff if self._min_backoff is not None else settings.min_backoff,
            max_backoff=self._max_backoff if self._max_backoff is not None else settings.max_backoff,
            dead_letter_topic=settings.dead_letter_topic,
        )

    def _lease(self, settings: _SubscriptionSettings, count: int) -> list[_Lease]:
        now = time.time()
        # Idle subscribers poll often: look without the write lock first, so they never queue writers.
        ready = (
            self._db.connection()
            .execute(
                "SELECT 1 FROM deliveries WHERE subscription = ? AND ("
                "(lease_token IS NULL AND available_at <= ?) "
                "OR (lease_token IS NOT NULL AND lease_expires <= ?)) LIMIT 1",
                (settings.name, now, now),
            )
            .fetchone()
        )
        if ready is None:
            return []
        with self._db.write() as connection:
            rows = connection.execute(
                """
                SELECT d.seq, m.message_id, d.ordering_key, d.attempt, m.data, m.attributes
                FROM deliveries d JOIN messages m ON m.seq = d.seq
                WHERE d.subscription = :sub
                  AND ((d.lease_token IS NULL AND d.available_at <= :now)
                       OR (d.lease_token IS NOT NULL AND d.lease_expires <= :now))
                  AND (:ordered = 0 OR d.ordering_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM deliveries e
                        WHERE e.subscription = d.subscription AND e.ordering_key = d.ordering_key
                          AND e.seq < d.seq))
                ORDER BY d.seq LIMIT :count
                """,
                {"sub": settings.name, "now": now, "ordered": int(settings.ordered), "count": count},
            ).fetchall()
            leases = []
            for seq, message_id, ordering_key, attempt, data, attributes in rows:
                token = uuid.uuid4().hex
                connection.execute(
                    "UPDATE deliveries SET attempt = attempt + 1, lease_token = ?, lease_expires = ? "
                    "WHERE subscription = ? AND seq = ?",
                    (token, now + settings.ack_deadline, settings.name, seq),
                )
                leases.append(
                    _Lease(
                        seq=seq,
                        message_id=message_id,
                        ordering_key=ordering_key,
                        attempt=attempt + 1,
                        token=token,
                        message=WireMessage(data=bytes(data), attributes=json.loads(attributes)),
                    )
                )
            return leases

    def _extend(self, settings: _SubscriptionSettings, leases: list[_Lease]) -> None:
        if not leases:
            return
        expires = time.time() + settings.ack_deadline
        with self._db.write() as connection:
            connection.executemany(
                "UPDATE deliveries SET lease_expires = ? "
                "WHERE subscription = ? AND seq = ? AND lease_token = ?",
                [(expires, settings.name, lease.seq, lease.token) for lease in leases],
            )

    def _ack(self, settings: _SubscriptionSettings, lease: _Lease) -> None:
        with self._db.write() as connection:
            connection.execute(
                "DELETE FROM deliveries WHERE subscription = ? AND seq = ? AND lease_token = ?",
                (settings.name, lease.seq, lease.token),
            )

    def _nack(self, settings: _SubscriptionSettings, lease: _Lease, reason: str, permanent: bool) -> None:
        with self._db.write() as connection:
            if permanent or lease.attempt >= settings.max_attempts:
                if not permanent:
                    reason = f"gave up after {lease.attempt} handler attempts: {reason}"
                self._dead_letter(connection, settings, lease, reason)
                return
            backoff = min(settings.max_backoff, settings.min_backoff * (2 ** (lease.attempt - 1)))
            connection.execute(
                "UPDATE deliveries SET lease_token = NULL, lease_expires = NULL, available_at = ? "
                "WHERE subscription = ? AND seq = ? AND lease_token = ?",
                (time.time() + backoff, settings.name, lease.seq, lease.token),
            )

    def _dead_letter(self, connection, settings: _SubscriptionSettings, lease: _Lease, reason: str) -> None:
        still_ours = connection.execute(
            "DELETE FROM deliveries WHERE subscription = ? AND seq = ? AND lease_token = ?",
            (settings.name, lease.seq, lease.token),
        ).rowcount
        if not still_ours or not settings.dead_letter_topic:
            return
        attributes = {
            **lease.message.attributes,
            DEAD_LETTER_REASON_ATTRIBUTE: reason[:1000],
            "CloudPubSubDeadLetterSourceSubscription": settings.name,
            "CloudPubSubDeadLetterSourceDeliveryCount": str(lease.attempt),
        }
        self._insert(
            connection,
            settings.dead_letter_topic,
            uuid.uuid4().hex,
            lease.ordering_key,
            WireMessage(data=lease.message.data, attributes=attributes),
        )

    # --- administration -------------------------------------------------------------------------------

    def provision(self, topology: Topology) -> None:
        with self._db.write() as connection:
            for topic in topology.all_topics():
                connection.execute("INSERT OR IGNORE INTO topics (name) VALUES (?)", (topic,))
            for sub in topology.subscriptions:
                self._upsert_subscription(
                    connection,
                    sub.name,
                    sub.topic,
                    sub.ordered,
                    sub.ack_deadline_seconds,
                    sub.max_delivery_attempts,
                    sub.min_backoff_seconds,
                    sub.max_backoff_seconds,
                    sub.dead_letter_topic,
                )
                # Dead-lettered messages wait here for an operator (see the replay command).
                self._upsert_subscription(
                    connection,
                    sub.hold_subscription,
                    sub.dead_letter_topic,
                    False,
                    sub.ack_deadline_seconds,
                    1_000_000,
                    sub.min_backoff_seconds,
                    sub.max_backoff_seconds,
                    None,
                )

    @staticmethod
    def _upsert_subscription(
        connection, name, topic, ordered, ack_deadline, attempts, min_b, max_b, dlt
    ) -> None:
        connection.execute(
            "INSERT INTO subscriptions (name, topic, ordered, ack_deadline, max_attempts, min_backoff, "
            "max_backoff, dead_letter_topic) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET ordered=excluded.ordered, ack_deadline=excluded.ack_deadline, "
            "max_attempts=excluded.max_attempts, "
            "min_backoff=excluded.min_backoff, max_backoff=excluded.max_backoff, "
            "dead_letter_topic=excluded.dead_letter_topic",
            (name, topic, int(ordered), ack_deadline, attempts, min_b, max_b, dlt),
        )

    def backlog(self, subscription: str) -> int:
        """Messages not yet acked on ``subscription`` (the on-call ``num_undelivered_messages``)."""
        row = (
            self._db.connection()
            .execute("SELECT COUNT(*) FROM deliveries WHERE subscription = ?", (subscription,))
            .fetchone()
        )
        return int(row[0])

    def check(self) -> None:
        self._db.connection().execute("SELECT 1 FROM topics LIMIT 1").fetchall()

    def close(self) -> None:
        for runner in list(self._runners):
            runner.stop()
        self._db.close()


class _SqliteRunner(SubscriptionRunner):
    """Leases up to ``max_in_flight`` messages at a time and runs their handlers on a thread pool."""

    def __init__(
        self, bus: SqliteBus, settings: _SubscriptionSettings, handler: EventHandler, max_in_flight: int
    ):
        self._bus = bus
        self._settings = settings
        self._handler = handler
        self._max_in_flight = max(1, max_in_flight)
        self._pool = ThreadPoolExecutor(max_workers=self._max_in_flight, thread_name_prefix=settings.name)
        self._in_flight: dict[int, _Lease] = {}
        self._in_flight_lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._pull_loop, name=f"pull-{settings.name}", daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=True)
        self._stopped = True

    def _pull_loop(self) -> None:
        idle_wait = 0.01
        last_extension = time.monotonic()
        while not self._stopping.is_set():
            try:
                with self._in_flight_lock:
                    free = self._max_in_flight - len(self._in_flight)
                leases = self._bus._lease(self._settings, free) if free > 0 else []
                if time.monotonic() - last_extension > self._settings.ack_deadline / 3:
                    with self._in_flight_lock:
                        held = list(self._in_flight.values())
                    self._bus._extend(self._settings, held)
                    last_extension = time.monotonic()
            except Exception as error:  # the file may be briefly locked or unavailable
                log.warning("bus.pull_failed", subscription=self._settings.name, error=str(error))
                leases = []
            for lease in leases:
                with self._in_flight_lock:
                    self._in_flight[lease.seq] = lease
                future: Future[None] = self._pool.submit(self._deliver, lease)
                future.add_done_callback(lambda _f, seq=lease.seq: self._finished(seq))
            if leases:
                idle_wait = 0.01
                continue
            self._wake.wait(idle_wait)
            self._wake.clear()
            idle_wait = min(self._bus._poll_interval, idle_wait * 2)

    def _finished(self, seq: int) -> None:
        with self._in_flight_lock:
            self._in_flight.pop(seq, None)
        self._wake.set()

    def _deliver(self, lease: _Lease) -> None:
        failure = self._run_handler(lease)
        try:
            if failure is None:
                self._bus._ack(self._settings, lease)
            else:
                reason, permanent = failure
                self._bus._nack(self._settings, lease, reason, permanent)
        except Exception as error:  # if even that fails the lease expires and the message comes back
            log.warning("bus.settle_failed", subscription=self._settings.name, error=str(error))

    def _run_handler(self, lease: _Lease) -> tuple[str, bool] | None:
        """Run the handler; return None on success, else (reason, permanent)."""
        name = self._settings.name
        try:
            event = Event.from_wire(lease.message)
            validate_received(event)
        except ValueError as error:
            log.error(
                "bus.undecodable_message", subscription=name, message_id=lease.message_id, error=str(error)
            )
            return f"undecodable: {error}", True
        delivery = Delivery(
            name, lease.message_id, lease.attempt, lease.ordering_key, lease.message.attributes
        )
        try:
            self._handler(event, delivery)
        except PermanentFailure as error:
            log.error(
                "bus.permanent_failure",
                subscription=name,
                event_type=event.type,
                event_id=event.id,
                error=str(error),
            )
            return str(error), True
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            log.warning(
                "bus.handler_failed",
                subscription=name,
                event_type=event.type,
                event_id=event.id,
                attempt=lease.attempt,
                error=reason,
            )
            return reason, False
        return None
