"""Events in: merge a signal into its access source and queue the student for the dispatcher.

This is all a bus handler does, in one store transaction, and then the message is acked: the decision is
durable, the TalentLMS work is the dispatcher's (at TalentLMS's pace, under its limits). Redelivered
events are recognised by id and change nothing; events in any order merge to the same source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from coursebridge.events.envelope import format_time, utc_now
from coursebridge.ports import DocumentStore, Transaction
from enrollment.domain.access import AccessSource, Signal
from enrollment.domain.ids import access_doc_id, student_doc_id
from enrollment.service_layer.repository import (
    ACCESSES,
    GRANT_LANE,
    QUEUE,
    REVOKE_LANE,
    STUDENTS,
    queue_item,
)

log = structlog.get_logger(__name__)

PROCESSED_KEPT = 200
_REVOKING = ("revoke", "deactivate")


@dataclass(frozen=True)
class IntakeResult:
    duplicate: bool
    queued: bool
    student_id: str | None


class Intake:
    def __init__(
        self,
        store: DocumentStore,
        *,
        clock: Callable[[], str] = lambda: format_time(utc_now()),
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_queued = on_queued

    def apply(self, signal: Signal) -> IntakeResult:
        result = self.store.transaction(lambda tx: self._apply(tx, signal))
        if result.queued and self.on_queued is not None:
            self.on_queued()
        return result

    def _apply(self, tx: Transaction, signal: Signal) -> IntakeResult:
        now = self.clock()
        doc_id = access_doc_id(signal.access_id)
        doc = tx.get(ACCESSES, doc_id) or {"access_id": signal.access_id, "processed": [], "created_at": now}
        processed: list[str] = list(doc.get("processed") or [])
        duplicate = signal.event_id in processed
        email = doc.get("email") or signal.email
        student_id = student_doc_id(email) if email else None
        student = tx.get(STUDENTS, student_id) if student_id else None
        queued = tx.get(QUEUE, student_id) if student_id else None
        if duplicate:
            return IntakeResult(True, False, student_id)

        source = AccessSource.from_json({**doc, "access_id": signal.access_id}).apply(signal)
        for key in ("email", "first_name", "last_name"):
            if getattr(signal, key) and not doc.get(key):
                doc[key] = getattr(signal, key)
        tx.set(
            ACCESSES,
            doc_id,
            {
                **doc,
                **source.to_json(),
                "processed": [*processed, signal.event_id][-PROCESSED_KEPT:],
                "student_id": student_id,
                "updated_at": now,
            },
        )
        if student_id is None:
            # No buyer e-mail yet (e.g. a suspension before its approval): kept, tied when one arrives.
            return IntakeResult(False, False, None)
        student = student or {"email": email, "sources": [], "created_at": now, "lms": None}
        for key in ("first_name", "last_name"):
            if doc.get(key) and not student.get(key):
                student[key] = doc[key]
        if signal.access_id not in student["sources"]:
            student["sources"] = [*student["sources"], signal.access_id]
        student["updated_at"] = now
        tx.set(STUDENTS, student_id, student)
        lane = REVOKE_LANE if signal.kind in _REVOKING else GRANT_LANE
        tx.set(QUEUE, student_id, queue_item(queued, student_id, lane, now))
        return IntakeResult(False, True, student_id)
