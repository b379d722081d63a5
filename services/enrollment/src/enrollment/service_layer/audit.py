"""Drift audit: compare what TalentLMS really has with desired state, repair what is ours, report the rest.

People edit TalentLMS by hand, calls get lost, users get deleted. Periodically
(``ENROLLMENT_AUDIT_INTERVAL_SECONDS``) and on demand, the audit reads the roster of every mapped course
(one call per course, within a bounded share of the hourly quota; courses beyond the share wait for the
next run) and walks every student page by page:

- ``missing``  — a wanted course the user is not on: the record is corrected and the student queued, the
  dispatcher enrolls again;
- ``extra``    — an enrollment CourseBridge made that no purchase covers any more: queued for removal;
- ``foreign``  — an enrollment CourseBridge never made (a known user on a course nobody pays for, or a user
  it does not know at all): counted and reported, never touched.

It runs in slices from the dispatcher's rounds, so it shares the dispatcher's lease and call budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from prometheus_client import Gauge

from coursebridge.events.envelope import format_time, utc_now
from coursebridge.ports import Cursor, DocumentStore, Filter, Transaction
from enrollment.domain.lms_record import LmsRecord
from enrollment.service_layer.ports import LearningPlatform, LmsError, Quota
from enrollment.service_layer.repository import (
    GRANT_LANE,
    LMS_STATE,
    PRODUCTS,
    QUEUE,
    STUDENTS,
    StoreReader,
    StudentUnit,
    load_student,
    mapping_from_doc,
    queue_item,
)

log = structlog.get_logger(__name__)

AUDIT_FINDINGS = Gauge("coursebridge_lms_audit_findings", "Findings of the last drift audit", ["kind"])
AUDIT_LAST_RUN = Gauge("coursebridge_lms_audit_last_run_timestamp_seconds", "When the last drift audit ended")

AUDIT_DOC = "audit_last"
AUDIT_REQUEST_DOC = "audit_request"
KINDS = ("missing", "extra", "foreign")
EXAMPLES_KEPT = 20


@dataclass
class _Run:
    started_at: str
    courses: list[str]
    rosters: dict[str, frozenset[str]] = field(default_factory=dict)
    skipped_courses: list[str] = field(default_factory=list)
    known_users: set[str] = field(default_factory=set)
    after: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: list[dict[str, Any]] = field(default_factory=list)
    students: int = 0
    calls: int = 0


class DriftAudit:
    def __init__(
        self,
        store: DocumentStore,
        lms: LearningPlatform,
        *,
        interval: float = 3600.0,
        quota_share: float = 0.1,
        page: int = 200,
        clock: Callable[[], float] = time.time,
        now: Callable[[], str] = lambda: format_time(utc_now()),
    ) -> None:
        self.store = store
        self.lms = lms
        self.interval = interval
        self.quota_share = quota_share
        self.page = page
        self.clock = clock
        self.now = now
        self._run: _Run | None = None
        self._last_end = clock()  # the first periodic run comes one interval after start

    # --- when ----------------------------------------------------------------------------------------------

    def due(self) -> bool:
        if self._run is not None:
            return True
        if self.store.get(LMS_STATE, AUDIT_REQUEST_DOC) is not None:
            return True
        return self.interval > 0 and self.clock() - self._last_end >= self.interval

    def step(self, quota: Quota | None, seconds: float = 1.0) -> bool:
        """Advance the audit for about ``seconds``; True when a run finished in this step."""
        deadline = self.clock() + seconds
        if self._run is None:
            self._run = self._start(quota)
        run = self._run
        reader = StoreReader(self.store)
        while self.clock() < deadline:
            page = self.store.query(
                STUDENTS, limit=self.page, start_after=Cursor(run.after) if run.after else None
            )
            for doc in page:
                unit = load_student(reader, doc.id)
                if unit is not None:
                    self._check(run, unit)
            if page:
                run.after = page[-1].id
            if len(page) < self.page:
                self._finish(run)
                return True
        return False

    # --- the run -------------------------------------------------------------------------------------------

    def _start(self, quota: Quota | None) -> _Run:
        courses: set[str] = set()
        for doc in self.store.scan(PRODUCTS, [Filter("removed", "==", False)]):
            mapping = mapping_from_doc(doc.data)
            if mapping is not None:
                courses |= set(mapping.course_ids) | {c for cs in mapping.plans.values() for c in cs}
        ordered = sorted(courses, key=lambda c: (len(c), c))
        allowed = len(ordered)
        if quota is not None and quota.reset_at > self.clock():
            allowed = min(allowed, max(1, int(quota.remaining * self.quota_share)))
        run = _Run(started_at=self.now(), courses=ordered[:allowed], skipped_courses=ordered[allowed:])
        for course in run.courses:
            try:
                run.rosters[course] = frozenset(self.lms.course_users(course))
            except LmsError as error:
                run.skipped_courses.append(course)
                log.warning("audit.roster_unread", course_id=course, error=type(error).__name__)
            run.calls += 1
        self.store.delete(LMS_STATE, AUDIT_REQUEST_DOC)
        log.info("audit.started", courses=len(run.rosters), skipped=len(run.skipped_courses))
        return run

    def _check(self, run: _Run, unit: StudentUnit) -> None:
        record = unit.record
        run.students += 1
        if record.user_id is None or record.in_doubt:
            return
        run.known_users.add(record.user_id)
        want = unit.want.course_ids
        corrected = record
        queue = False
        for course, roster in run.rosters.items():
            present = record.user_id in roster
            if course in want and not present and course in record.enrolled:
                self._found(run, "missing", unit, course)
                corrected = corrected.settled({course: False}, self.now())
                queue = True
            elif course not in want and present and course in record.managed:
                self._found(run, "extra", unit, course)
                corrected = corrected.settled({course: True}, self.now())
                queue = True
            elif course not in want and present and course not in record.managed:
                self._found(run, "foreign", unit, course)
        if queue:
            self.store.transaction(lambda tx: self._repair(tx, unit.student_id, corrected))

    def _repair(self, tx: Transaction, student_id: str, corrected: LmsRecord) -> None:
        unit = load_student(tx, student_id)
        if unit is None or unit.record.in_doubt:
            return
        now = self.now()
        unit.commit(tx, replace(unit.record, enrolled=corrected.enrolled, managed=corrected.managed), now)
        tx.set(QUEUE, student_id, queue_item(unit.queue, student_id, GRANT_LANE, now))

    def _found(self, run: _Run, kind: str, unit: StudentUnit, course: str) -> None:
        run.counts[kind] += 1
        if len(run.examples) < EXAMPLES_KEPT:
            run.examples.append(
                {
                    "kind": kind,
                    "student_id": unit.student_id,
                    "lms_user_id": unit.record.user_id,
                    "course_id": course,
                }
            )

    def _finish(self, run: _Run) -> None:
        for course, roster in run.rosters.items():
            for user_id in sorted(roster - run.known_users):
                # On a mapped course, a user no student of CourseBridge has: someone else's enrollment.
                run.counts["foreign"] += 1
                if len(run.examples) < EXAMPLES_KEPT:
                    run.examples.append(
                        {"kind": "foreign", "student_id": None, "lms_user_id": user_id, "course_id": course}
                    )
        report = {
            "started_at": run.started_at,
            "finished_at": self.now(),
            "courses_audited": sorted(run.rosters, key=lambda c: (len(c), c)),
            "courses_skipped": run.skipped_courses,
            "students": run.students,
            "calls": run.calls,
            "counts": run.counts,
            "examples": run.examples,
        }
        self.store.set(LMS_STATE, AUDIT_DOC, report)
        for kind in KINDS:
            AUDIT_FINDINGS.labels(kind).set(run.counts[kind])
        AUDIT_LAST_RUN.set(self.clock())
        log.info("audit.finished", **run.counts, students=run.students, calls=run.calls)
        self._run = None
        self._last_end = self.clock()


def request_audit(store: DocumentStore, actor: str) -> None:
    store.set(LMS_STATE, AUDIT_REQUEST_DOC, {"requested_at": format_time(utc_now()), "actor": actor})


def last_audit(store: DocumentStore) -> dict[str, Any] | None:
    return store.get(LMS_STATE, AUDIT_DOC)
