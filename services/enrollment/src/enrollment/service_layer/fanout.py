"""Spread a mapping change to every student it affects: each is queued and re-evaluated by the dispatcher.

A mapping change stores a ``fanout`` job in the same transaction as the mapping. The dispatcher works the
job off page by page (a cursor kept in the job, so a restart continues where it stopped and no student is
skipped however many there are): every student with an access of that product is queued, and courses that
failed or did not exist for them are tried again, since the change may be what they waited for. A newer
change to the same product restarts the job from the beginning.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from coursebridge.events.envelope import format_time, utc_now
from coursebridge.ports import Cursor, DocumentStore, Filter, Transaction
from enrollment.service_layer.repository import ACCESSES, FANOUT, GRANT_LANE, QUEUE, load_student, queue_item

log = structlog.get_logger(__name__)

PAGE = 200


def schedule(tx: Transaction, product_id: str, revision: int, now: str) -> None:
    """Called in the mapping change's own transaction (after its reads)."""
    tx.set(
        FANOUT, product_id, {"product_id": product_id, "revision": revision, "after": None, "created_at": now}
    )


class Fanout:
    def __init__(
        self,
        store: DocumentStore,
        *,
        clock: Callable[[], str] = lambda: format_time(utc_now()),
        page: int = PAGE,
    ) -> None:
        self.store = store
        self.clock = clock
        self.page = page

    def pending(self) -> int:
        return self.store.count(FANOUT)

    def step(self, max_pages: int = 1) -> int:
        """Work off up to ``max_pages`` pages of every pending job; returns students queued."""
        queued = 0
        for job in self.store.query(FANOUT, limit=20):
            for _ in range(max_pages):
                done, count = self._page(job.data)
                queued += count
                if done:
                    break
                job_data = self.store.get(FANOUT, job.id)
                if job_data is None:
                    break
                job = type(job)(job.id, job_data)
        return queued

    def _page(self, job: dict) -> tuple[bool, int]:
        product_id, revision = job["product_id"], job["revision"]
        after = Cursor(job["after"]) if job.get("after") else None
        page = self.store.query(
            ACCESSES, [Filter("product_id", "==", product_id)], limit=self.page, start_after=after
        )
        students = sorted({doc.data["student_id"] for doc in page if doc.data.get("student_id")})
        for student_id in students:
            self.store.transaction(lambda tx, sid=student_id: self._requeue(tx, sid))
        last = page[-1].id if page else job.get("after")
        finished = len(page) < self.page

        def advance(tx: Transaction) -> None:
            current = tx.get(FANOUT, product_id)
            if current is None or current["revision"] != revision:
                return  # a newer change restarted the job
            if finished:
                tx.delete(FANOUT, product_id)
            else:
                tx.set(FANOUT, product_id, {**current, "after": last})

        self.store.transaction(advance)
        if finished:
            log.info("fanout.done", product_id=product_id, revision=revision)
        return finished, len(students)

    def _requeue(self, tx: Transaction, student_id: str) -> None:
        unit = load_student(tx, student_id)
        if unit is None:
            return
        now = self.clock()
        unit.commit(tx, unit.record.unblocked(), now)
        tx.set(QUEUE, student_id, queue_item(unit.queue, student_id, GRANT_LANE, now))
