"""Singleton leases on both store families: one holder at a time, takeover after expiry, clean release."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from coursebridge.lease import Lease, singleton

if TYPE_CHECKING:
    from conftest import StoreBackend

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_only_one_holder_until_the_lease_expires(store_backend: StoreBackend) -> None:
    clock = Clock()
    first = Lease(store_backend.make("enrollment"), "dispatcher", holder="pod-a", ttl=10, clock=clock)
    second = Lease(store_backend.make("enrollment"), "dispatcher", holder="pod-b", ttl=10, clock=clock)

    assert first.acquire() is True
    assert second.acquire() is False
    clock.now += 9
    assert first.acquire() is True  # renewed: another 10 s from now
    clock.now += 9
    assert second.acquire() is False
    clock.now += 2
    assert second.acquire() is True  # first stopped renewing
    assert first.acquire() is False  # and learns it lost the term
    assert second.current().term == first.current().term == 2


def test_release_hands_over_at_once(store_backend: StoreBackend) -> None:
    store = store_backend.make("enrollment")
    first = Lease(store, "relay", holder="pod-a", ttl=60)
    second = Lease(store, "relay", holder="pod-b", ttl=60)
    assert first.acquire()

    first.release()

    assert not first.held
    assert second.acquire() is True


def test_two_replicas_racing_never_both_hold(store_backend: StoreBackend) -> None:
    leases = [Lease(store_backend.make("enrollment"), "audit", holder=f"pod-{n}", ttl=30) for n in range(4)]
    results: list[bool] = []
    lock = threading.Lock()

    def race(lease: Lease) -> None:
        won = lease.acquire()
        with lock:
            results.append(won)

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, False, False, True]


def test_singleton_loop_runs_rounds_on_one_replica_only(store_backend: StoreBackend) -> None:
    rounds = {"pod-a": 0, "pod-b": 0}
    stop = threading.Event()

    def work(name: str):
        def round_() -> float:
            rounds[name] += 1
            if sum(rounds.values()) >= 5:
                stop.set()
            return 0.01

        return round_

    loops = [
        singleton(Lease(store_backend.make("ingest"), "relay", holder=name, ttl=30), work(name), idle=0.01)
        for name in rounds
    ]
    threads = [threading.Thread(target=loop, args=(stop,)) for loop in loops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sum(rounds.values()) >= 5
    assert min(rounds.values()) == 0  # the standby never worked while the holder was alive


class FlakyStore:
    """The real store, whose next transaction fails (as a store outage or contention would)."""

    def __init__(self, store) -> None:
        self._store = store
        self.owner = store.owner
        self.fail_next = False

    def transaction(self, work):
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("store unreachable")
        return self._store.transaction(work)

    def get(self, kind, doc_id):
        return self._store.get(kind, doc_id)


def test_a_failed_renewal_does_not_lock_the_holder_out(store_backend: StoreBackend) -> None:
    clock = Clock()
    store = FlakyStore(store_backend.make("enrollment"))
    lease = Lease(store, "dispatcher", holder="pod-a", ttl=30, clock=clock)  # type: ignore[arg-type]
    assert lease.acquire()

    store.fail_next = True
    with pytest.raises(ConnectionError):
        lease.acquire()
    clock.now += 5

    assert lease.acquire() is True  # still ours: renewed, not waiting 30 s for its own lease to expire
    assert lease.current().term == 1
