"""Leases: one active holder per deployment for loops that must not run twice (relay, dispatcher, audit).

Every replica runs the same worker; a lease document in the service's own store says which one does the
singleton work. A holder renews before each round; a holder that dies stops renewing and another replica
takes over once the lease expired (``ttl`` seconds). Renewal happens in a store transaction, so two replicas
can never both believe they won the same term: the ``term`` number grows at every change of holder, and a
holder that finds a newer term stops working at once (it was too slow to renew, e.g. a long GC pause).

Clocks: expiry is compared with the wall clock of the replica that tries to take over. Skew between
replicas shortens or lengthens a takeover by the skew; it never gives two holders, because taking over
is a transaction on the document that the old holder must read and update to renew.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from prometheus_client import Gauge

from coursebridge.ports import DocumentStore, Transaction

log = structlog.get_logger(__name__)

LEASE_KIND = "leases"
LEASE_HELD = Gauge(
    "coursebridge_lease_held",
    "1 while this process holds the named singleton lease",
    ["service", "lease"],
    multiprocess_mode="livemax",
)

Loop = Callable[[threading.Event], None]


def default_holder() -> str:
    """Pod name (HOSTNAME on Kubernetes) plus pid and a random part: unique per process."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    term: int
    expires_at: float


class Lease:
    """A named lease in ``store`` (kind ``leases``); thread-safe for one holder object."""

    def __init__(
        self,
        store: DocumentStore,
        name: str,
        *,
        holder: str | None = None,
        ttl: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self.store = store
        self.name = name
        self.holder = holder or default_holder()
        self.ttl = ttl
        self.clock = clock
        self._term: int | None = None

    @property
    def held(self) -> bool:
        return self._term is not None

    def acquire(self) -> bool:
        """Take or renew the lease: True when this holder has it for the next ``ttl`` seconds."""

        def work(tx: Transaction) -> int | None:
            now = self.clock()
            doc = tx.get(LEASE_KIND, self.name)
            state = _state(doc)
            mine = state.holder == self.holder and state.term == self._term
            if not mine and state.holder is not None and state.expires_at > now:
                return None
            term = state.term if mine else state.term + 1
            tx.set(
                LEASE_KIND,
                self.name,
                {"holder": self.holder, "term": term, "expires_at": now + self.ttl, "renewed_at": now},
            )
            return term

        previous = self._term
        try:
            self._term = self.store.transaction(work)
        except Exception:
            # Unknown whether the renewal was stored: keep the term, so the next try recognises our own
            # lease (clearing it would lock every replica out until it expired). The caller does no work
            # this round.
            raise
        finally:
            LEASE_HELD.labels(self.store.owner, self.name).set(1 if self._term is not None else 0)
        if self._term is not None and previous is None:
            log.info("lease.acquired", lease=self.name, term=self._term)
        elif self._term is None and previous is not None:
            log.warning("lease.lost", lease=self.name, term=previous)
        return self._term is not None

    def release(self) -> None:
        """Give the lease up now (clean shutdown), so a standby replica takes over without waiting."""
        term = self._term
        self._term = None
        LEASE_HELD.labels(self.store.owner, self.name).set(0)
        if term is None:
            return

        def work(tx: Transaction) -> None:
            state = _state(tx.get(LEASE_KIND, self.name))
            if state.holder == self.holder and state.term == term:
                tx.set(LEASE_KIND, self.name, {"holder": None, "term": term, "expires_at": 0.0})

        try:
            self.store.transaction(work)
        except Exception as error:  # the lease expires by itself
            log.warning("lease.release_failed", lease=self.name, error=type(error).__name__)

    def current(self) -> LeaseState:
        return _state(self.store.get(LEASE_KIND, self.name))


def _state(doc: dict | None) -> LeaseState:
    if not doc:
        return LeaseState(None, 0, 0.0)
    return LeaseState(doc.get("holder"), int(doc.get("term") or 0), float(doc.get("expires_at") or 0.0))


def singleton(
    lease: Lease,
    work_round: Callable[[], float | None],
    *,
    idle: float = 1.0,
    wake: threading.Event | None = None,
) -> Loop:
    """A worker loop that runs ``work_round`` only while holding ``lease``.

    ``work_round`` does a bounded amount of work and returns how long to wait before the next round
    (``None``: ``idle``). The lease is renewed before every round; rounds must be shorter than a third of
    its ttl. A standby replica re-tries every ``min(idle, ttl / 3)`` seconds. Setting ``wake`` (e.g. when
    new work was queued in this process) ends a wait early, so quiet-time latency is not the poll interval.
    """
    standby = min(idle, lease.ttl / 3)

    def loop(stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    held = lease.acquire()
                except Exception as error:  # store trouble: neither work nor assume the lease
                    log.warning("lease.renew_failed", lease=lease.name, error=type(error).__name__)
                    stop.wait(standby)
                    continue
                if not held:
                    stop.wait(standby)
                    continue
                if stop.is_set():  # stopping: start no new round, even one the lease now allows
                    break
                try:
                    wait = work_round()
                except Exception as error:
                    log.warning(
                        "singleton.round_failed",
                        lease=lease.name,
                        error=f"{type(error).__name__}: {error}"[:300],
                    )
                    wait = idle
                _pause(stop, wake, min(idle if wait is None else wait, lease.ttl / 3))
        finally:
            lease.release()

    return loop


def _pause(stop: threading.Event, wake: threading.Event | None, seconds: float) -> None:
    if wake is None:
        stop.wait(seconds)
        return
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0 or wake.wait(min(left, 0.05)):
            return
