"""Use cases: project events into the warehouse (batched, acked only once durable) and rebuild it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from analytics.domain.projection import Projection, project, project_facts
from analytics.ports import Warehouse
from coursebridge.events import Event
from coursebridge.ports import Delivery

log = structlog.get_logger(__name__)


def project_events(warehouse: Warehouse, events: Iterable[Event], key: bytes) -> int:
    """Project and write events in one batch; returns how many were new."""
    batch = Projection()
    for event in events:
        batch.extend(project(event, key))
    return warehouse.write(batch)


@dataclass
class _Pending:
    projection: Projection
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class BatchingProjector:
    """Group commit: concurrent handlers hand their rows over and wait until a batch holding them is written.

    A handler returns (and the bus acks its message) only after the batch was committed; if the write
    fails, every handler of that batch raises and the bus redelivers. Batches close at ``max_batch``
    events or ``max_wait`` seconds after the first one arrived.
    """

    def __init__(
        self, warehouse: Warehouse, key: bytes, *, max_batch: int = 500, max_wait: float = 0.05
    ) -> None:
        self.warehouse = warehouse
        self.key = key
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="analytics-writer", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True

    def stop(self, timeout: float = 10.0) -> None:
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)

    def alive(self) -> None:
        if self._started and not self._thread.is_alive():
            raise RuntimeError("analytics writer thread stopped")

    def handle(self, event: Event, _delivery: Delivery) -> None:
        self.start()
        pending = _Pending(project(event, self.key))
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            try:
                deadline = time.monotonic() + self.max_wait  # from the first event, not the last
                while len(batch) < self.max_batch:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
            except queue.Empty:
                pass
            self._flush(batch)

    def _flush(self, batch: list[_Pending]) -> None:
        combined = Projection()
        for pending in batch:
            combined.extend(pending.projection)
        error: BaseException | None = None
        try:
            new = self.warehouse.write(combined)
            log.debug("analytics.batch_written", events=len(batch), new=new)
        except Exception as exc:
            log.warning("analytics.batch_failed", events=len(batch), error=str(exc)[:300])
            error = exc
        for pending in batch:
            pending.error = error
            pending.done.set()


def rebuild(
    warehouse: Warehouse,
    key: bytes,
    *,
    batch_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Recompute every fact table from the raw ``events`` log. Idempotent: the log is never changed."""
    warehouse.migrate()
    warehouse.truncate_facts()
    total = 0
    for raw in warehouse.iter_raw_events(batch_size):
        facts = Projection()
        for row in raw:
            facts.extend(project_facts(row["event_id"], row["type"], row["payload"] or {}, row["time"], key))
        warehouse.write(facts)
        total += len(raw)
        if progress:
            progress(len(raw))
    return total
