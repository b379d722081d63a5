"""Why a student has (or does not have) access: the "my courses" view, and an operator's resync.

Everything is derived on read from the student's access sources, the current mappings, the TalentLMS
record and the queue, so the answer is never a stale copy: each course comes with a status and a reason
in plain words (``"queued for TalentLMS, ETA 4 min"``, ``"revoked: purchase refunded"``...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coursebridge.events.envelope import format_time, utc_now
from coursebridge.ports import DocumentStore, Filter, Transaction
from enrollment.domain.ids import normalise_email, student_doc_id
from enrollment.service_layer.dispatcher import STATE_DOC, eta_from_state
from enrollment.service_layer.ports import Quota
from enrollment.service_layer.repository import (
    ACCESSES,
    GRANT_LANE,
    LMS_STATE,
    QUEUE,
    REVOKE_LANE,
    STUDENTS,
    StoreReader,
    StudentUnit,
    load_student,
    queue_item,
)

LinkFetcher = Callable[[str, str], str | None]


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def queue_position(store: DocumentStore, item: dict[str, Any]) -> int:
    """1-based place in line: every revocation goes first, then grants waiting longer."""
    ahead = store.count(QUEUE, [Filter("lane", "==", item["lane"]), Filter("since", "<", item["since"])])
    if item["lane"] == GRANT_LANE:
        ahead += store.count(QUEUE, [Filter("lane", "==", REVOKE_LANE)])
    return ahead + 1


def queue_eta(store: DocumentStore, position: int) -> float | None:
    state = store.get(LMS_STATE, STATE_DOC)
    if not state:
        return None
    quota = state.get("quota")
    return eta_from_state(
        position,
        calls_per_student=float(state.get("calls_per_student") or 2.0),
        calls_per_second=float(state.get("calls_per_second") or 38.0),
        quota=Quota(quota["limit"], quota["remaining"], quota["reset_at"]) if quota else None,
        quota_window=float(state.get("quota_window_seconds") or 3600.0),
        now=utc_now().timestamp(),
    )


def student_view(store: DocumentStore, email: str, links: LinkFetcher | None = None) -> dict[str, Any]:
    unit = load_student(StoreReader(store), student_doc_id(email))
    if unit is None:
        return {"email_known": False, "lms_user_id": None, "enrollments": [], "parked": [], "queue": None}
    queue = None
    if unit.queue is not None:
        position = queue_position(store, unit.queue)
        eta = queue_eta(store, position)
        queue = {
            "lane": unit.queue["lane"],
            "since": unit.queue["since"],
            "position": position,
            "eta_seconds": round(eta, 1) if eta is not None else None,
            "attempts": unit.queue.get("attempts", 0),
            "last_error": unit.queue.get("last_error"),
        }
    return {
        "email_known": True,
        "lms_user_id": unit.record.user_id,
        "in_doubt": unit.record.in_doubt,
        "enrollments": _courses(unit, queue, links),
        "parked": [
            {
                "access_id": s.access_id,
                "product_id": s.product_id,
                "transaction": s.transaction,
                "since": s.changed_at,
                "reason": f"parked: product {s.product_id} is not mapped to any course"
                + (f" (since {s.changed_at[:16].replace('T', ' ')} UTC)" if s.changed_at else ""),
            }
            for s in unit.sources
            if s.access_id in unit.want.parked
        ],
        "queue": queue,
        "sources": [
            {"access_id": s.access_id, **s.view()} for s in sorted(unit.sources, key=lambda s: s.access_id)
        ],
    }


def _courses(
    unit: StudentUnit, queue: dict[str, Any] | None, links: LinkFetcher | None
) -> list[dict[str, Any]]:
    want = unit.want
    record = unit.record
    mapped: set[str] = set()
    for source in unit.sources:
        mapping = unit.mappings.get(source.product_id or "")
        if mapping is not None:
            mapped |= set(mapping.courses_for(source.plan_id))
    courses = (
        set(want.course_ids)
        | record.enrolled
        | record.managed
        | mapped
        | set(record.failures)
        | set(record.blocked)
    )
    waiting = ""
    if queue is not None:
        eta = queue.get("eta_seconds")
        waiting = "queued for TalentLMS" + (f", ETA {_minutes(eta)}" if eta is not None else "")
    out = []
    for course in sorted(courses, key=lambda c: (len(c), c)):
        wanted = course in want.course_ids
        there = course in record.enrolled
        if record.in_doubt and (wanted != there):
            status, reason = (
                "in_doubt",
                "a TalentLMS call's outcome is being checked by reading TalentLMS back",
            )
        elif wanted and course in record.blocked:
            status, reason = "blocked", f"waits for a mapping change: {record.blocked[course]}"
        elif wanted and course in record.failures:
            status, reason = "failed", f"TalentLMS refused: {record.failures[course]} (resync to retry)"
        elif wanted and there:
            status, reason = "enrolled", "granted by " + ", ".join(want.courses[course])
        elif wanted:
            status, reason = "pending", waiting or "waiting for the dispatcher"
        elif there and course in record.managed:
            status, reason = "removing", (waiting or "waiting for the dispatcher") + " to remove it"
        elif there:
            status, reason = (
                "not_managed",
                "enrolled in TalentLMS by someone else; CourseBridge never touches it",
            )
        else:
            status, reason = "revoked", _why_not(unit, course)
        item: dict[str, Any] = {
            "course_id": course,
            "status": status,
            "reason": reason,
            "granted_by": list(want.courses.get(course, ())),
        }
        if links is not None and status == "enrolled" and record.user_id:
            item["link"] = links(record.user_id, course)
        out.append(item)
    return out


def _why_not(unit: StudentUnit, course: str) -> str:
    reasons = []
    for source in unit.sources:
        mapping = unit.mappings.get(source.product_id or "")
        if mapping is not None and course in mapping.courses_for(source.plan_id) and not source.active:
            when = f" on {source.changed_at[:10]}" if source.changed_at else ""
            reasons.append(f"{source.reason or source.state}{when}")
    if reasons:
        return "no access: " + "; ".join(sorted(reasons))
    return "no purchase or subscription covers this course any more (mapping changed)"


def find_students(
    store: DocumentStore, *, transaction: str | None = None, subscriber_code: str | None = None
) -> list[dict[str, Any]]:
    """Which students a purchase or a subscriber concerns (ingest knows the transaction, not the e-mail)."""
    if transaction:
        filters = [Filter("transaction", "==", transaction)]
    elif subscriber_code:  # access ids of a subscription are ``sub:<code>:<product id>``
        prefix = f"sub:{subscriber_code}:"
        filters = [Filter("access_id", ">=", prefix), Filter("access_id", "<", prefix + "\uffff")]
    else:
        raise ValueError("give a transaction or a subscriber code")
    out = []
    for doc in store.query(ACCESSES, filters, limit=100):
        email = doc.data.get("email")
        out.append(
            {
                "access_id": doc.data.get("access_id"),
                "email": email,
                "student_id": doc.data.get("student_id"),
                "product_id": doc.data.get("product_id"),
                "transaction": doc.data.get("transaction"),
            }
        )
    return out


def failed_students(store: DocumentStore, limit: int = 100) -> list[dict[str, Any]]:
    out = []
    for doc in store.query(STUDENTS, [Filter("has_failures", "==", True)], limit=limit):
        record = doc.data.get("lms") or {}
        out.append(
            {
                "student_id": doc.id,
                "email": doc.data.get("email"),
                "failures": record.get("failures") or {},
                "blocked": record.get("blocked") or {},
                "updated_at": doc.data.get("updated_at"),
            }
        )
    return out


def resync(
    store: DocumentStore, email: str, clock: Callable[[], str] = lambda: format_time(utc_now())
) -> bool:
    """Recompute desired, re-read TalentLMS, act: failures are forgotten and the student queued."""
    student_id = student_doc_id(normalise_email(email))

    def work(tx: Transaction) -> bool:
        unit = load_student(tx, student_id)
        if unit is None:
            return False
        now = clock()
        unit.commit(tx, unit.record.resync(), now)
        lane = REVOKE_LANE if (unit.record.managed - unit.want.course_ids) else GRANT_LANE
        tx.set(QUEUE, student_id, queue_item(unit.queue, student_id, lane, now))
        return True

    return store.transaction(work)
