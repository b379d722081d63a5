"""Batches for a backlog: TalentLMS API v2's batch user upsert and batch enrollments, checked by reading back.

A launch queues thousands of new students. One call per user and per course would need two calls per
student (10,000 buyers: 20,000 calls, ten hours on a 2,000 calls/hour plan). In batches of 100:

1. intents for the whole chunk are stored, then ``POST batch/users`` (one call per 100 new users); the
   task is polled; the new users' ids come from one paged ``GET users?filter[last_updated][gte]``;
2. intents for every (user, course) pair, then ``POST batch/enrollments`` (one call per 100 pairs);
3. the outcome is *checked*, never assumed: what a batch task reports per item is unconfirmed, and a batch
   may partly fail, so each course's roster is read once (one call per course) and every pair is settled
   by whether the user is on it. A pair not there simply stays wanted: the quiet path retries it.

A crash anywhere leaves intents behind: those students are read back before anything else is done for
them (``bulk_read_back`` settles many at once from the rosters of their courses).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from coursebridge.events.enrollments import ENROLLMENT_GRANTED
from coursebridge.events.envelope import format_time, utc_now
from coursebridge.ports import DocumentStore, Transaction
from enrollment.domain.lms_record import Intent, LmsRecord
from enrollment.service_layer.ports import (
    LearningPlatform,
    LmsAuthRejected,
    LmsError,
    LmsInDoubt,
    LmsRateLimited,
    NewUser,
    TaskStatus,
)
from enrollment.service_layer.reconcile import Announcer, generate_password, login_for
from enrollment.service_layer.repository import QUEUE, StoreReader, StudentUnit, load_student

log = structlog.get_logger(__name__)

BATCH_SIZE = 100  # TalentLMS's limit per batch request
TASK_POLL_DELAYS = (0.2, 0.5, 1.0, 2.0, 3.0)  # then the task is left in doubt and settled later


@dataclass
class BatchOutcome:
    students: int = 0
    calls: int = 0
    users_created: int = 0
    enrolled: int = 0
    unsettled: int = 0
    rate_limited_for: float | None = None
    auth_rejected: LmsAuthRejected | None = None
    errors: list[str] = field(default_factory=list)


class _Stop(Exception):
    """A limit or a rejected key ends the batch round; intents already stored stay in doubt."""


class BatchEnroller:
    def __init__(
        self,
        store: DocumentStore,
        lms: LearningPlatform,
        announcer: Announcer,
        *,
        clock: Callable[[], str] = lambda: format_time(utc_now()),
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll_delays: Sequence[float] = TASK_POLL_DELAYS,
    ) -> None:
        self.store = store
        self.lms = lms
        self.announcer = announcer
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.poll_delays = tuple(poll_delays)

    def run(self, student_ids: Sequence[str]) -> BatchOutcome:
        outcome = BatchOutcome()
        reader = StoreReader(self.store)
        units = [u for u in (load_student(reader, sid) for sid in student_ids) if u is not None]
        try:
            self.bulk_read_back([u for u in units if u.record.intents], outcome)
            units = [u for u in (load_student(reader, sid) for sid in student_ids) if u is not None]
            self._create_users(units, outcome)
            units = [u for u in (load_student(reader, sid) for sid in student_ids) if u is not None]
            self._enroll(units, outcome)
        except _Stop:
            pass
        outcome.students = len(units)
        log.info(
            "batch.round",
            students=outcome.students,
            calls=outcome.calls,
            users_created=outcome.users_created,
            enrolled=outcome.enrolled,
            unsettled=outcome.unsettled,
        )
        return outcome

    # --- read-back in bulk ---------------------------------------------------------------------------------

    def bulk_read_back(self, units: Sequence[StudentUnit], outcome: BatchOutcome) -> None:
        """Settle in-doubt enroll/unenroll intents of many students with one roster read per course."""
        courses = sorted(
            {i.course_id for u in units for i in u.record.intents if i.course_id and u.record.user_id}
        )
        if not courses:
            return
        rosters = self._rosters(courses, outcome)
        self._settle(units, rosters)

    # --- users ---------------------------------------------------------------------------------------------

    def _create_users(self, units: Sequence[StudentUnit], outcome: BatchOutcome) -> None:
        needing = [
            u
            for u in units
            if u.record.user_id is None and not u.record.in_doubt and u.email and u.want.course_ids
        ]
        for chunk in _chunks(needing, BATCH_SIZE):
            started = self.wall()
            ids = [u.student_id for u in chunk]
            self._write(ids, lambda r: r.intending(Intent("sign_up", None, self.clock())))
            users = [_new_user(u) for u in chunk]
            task = self._call(outcome, lambda users=users: self.lms.batch_upsert_users(users))
            self._wait(task, outcome)
            found = {
                user.email.lower(): user
                for user in self._call(
                    outcome, lambda started=started: self.lms.users_updated_since(started - 1.0)
                )
            }
            resolved = 0

            def settle(record: LmsRecord, unit: StudentUnit, found=found) -> LmsRecord:
                nonlocal resolved
                user = found.get((unit.email or "").lower())
                if user is None:
                    return record.not_done("sign_up", None)  # the quiet path looks it up or signs it up
                resolved += 1
                return record.user_resolved(
                    user.id, user.courses if user.courses is not None else frozenset()
                )

            self._write_units(ids, settle)
            outcome.users_created += resolved

    # --- enrollments ---------------------------------------------------------------------------------------

    def _enroll(self, units: Sequence[StudentUnit], outcome: BatchOutcome) -> None:
        pairs: list[tuple[StudentUnit, str]] = []
        for unit in units:
            if unit.record.user_id is None or unit.record.in_doubt:
                continue
            pairs += [
                (unit, s.course_id)
                for s in unit.record.next_steps(unit.want.course_ids)
                if s.kind == "enroll" and s.course_id
            ]
        if not pairs:
            return
        sent: list[tuple[StudentUnit, str]] = []
        try:
            for chunk in _chunks(pairs, BATCH_SIZE):
                by_student: dict[str, list[str]] = {}
                for unit, course in chunk:
                    by_student.setdefault(unit.student_id, []).append(course)
                now = self.clock()
                self._write(
                    list(by_student),
                    lambda r, sid, by_student=by_student, now=now: _intend_all(r, by_student[sid], now),
                    with_id=True,
                )
                sent += chunk
                request = [(unit.record.user_id or "", course) for unit, course in chunk]
                task = self._call(outcome, lambda request=request: self.lms.batch_enroll(request))
                self._wait(task, outcome)
        finally:
            if sent:
                # Settle whatever was sent, even when a limit stopped the round midway.
                try:
                    rosters = self._rosters(sorted({course for _, course in sent}), outcome)
                except _Stop:
                    outcome.unsettled += len(sent)
                else:
                    before = {u.student_id: u.record.enrolled for u, _ in sent}
                    self._settle([u for u, _ in sent], rosters, before=before, outcome=outcome)

    # --- plumbing ------------------------------------------------------------------------------------------

    def _rosters(self, courses: Iterable[str], outcome: BatchOutcome) -> dict[str, frozenset[str]]:
        return {
            course: frozenset(self._call(outcome, lambda c=course: self.lms.course_users(c)))
            for course in courses
        }

    def _settle(
        self,
        units: Sequence[StudentUnit],
        rosters: dict[str, frozenset[str]],
        *,
        before: dict[str, frozenset[str]] | None = None,
        outcome: BatchOutcome | None = None,
    ) -> None:
        ids = sorted({u.student_id for u in units})
        at = self.clock()

        def settle(record: LmsRecord, unit: StudentUnit) -> LmsRecord:
            if record.user_id is None:
                return record
            membership = {course: record.user_id in roster for course, roster in rosters.items()}
            relevant = {c for c in membership if c in unit.want.course_ids or c in record.managed}
            relevant |= {i.course_id for i in record.intents if i.course_id}
            return record.settled({c: membership[c] for c in relevant if c in membership}, at)

        granted = self._write_units(ids, settle, announce_from=before)
        if outcome is not None:
            outcome.enrolled += granted

    def _call(self, outcome: BatchOutcome, call: Callable[[], Any]) -> Any:
        outcome.calls += 1
        try:
            return call()
        except LmsRateLimited as limited:
            outcome.rate_limited_for = limited.retry_after
            raise _Stop from None
        except LmsAuthRejected as rejected:
            outcome.auth_rejected = rejected
            raise _Stop from None
        except LmsError as error:
            outcome.errors.append(type(error).__name__)
            log.warning(
                "batch.call_failed", error=type(error).__name__, in_doubt=isinstance(error, LmsInDoubt)
            )
            raise _Stop from None

    def _wait(self, task_id: str, outcome: BatchOutcome) -> TaskStatus | None:
        for delay in self.poll_delays:
            self.sleep(delay)
            status: TaskStatus = self._call(outcome, lambda: self.lms.task_status(task_id))
            if status.state in ("completed", "failed"):
                failures = [item for item in status.items if item.ok is False]
                if status.state == "failed" or failures:
                    log.warning("batch.task_partly_failed", state=status.state, failed_items=len(failures))
                return status
        return None  # still running: the read-back settles what it did

    def _write(
        self, student_ids: Sequence[str], change: Callable[..., LmsRecord], *, with_id: bool = False
    ) -> None:
        def work(tx: Transaction) -> None:
            units = [u for u in (load_student(tx, sid) for sid in student_ids) if u is not None]
            now = self.clock()
            for unit in units:
                record = change(unit.record, unit.student_id) if with_id else change(unit.record)
                unit.commit(tx, record, now)

        self.store.transaction(work)

    def _write_units(
        self,
        student_ids: Sequence[str],
        change: Callable[[LmsRecord, StudentUnit], LmsRecord],
        *,
        announce_from: dict[str, frozenset[str]] | None = None,
    ) -> int:
        """Apply ``change`` per student in one transaction; announce new enrollments; leave the queue
        for students that reached desired state. Returns the number of courses newly confirmed."""
        granted = 0

        def work(tx: Transaction) -> None:
            nonlocal granted
            granted = 0
            units = [u for u in (load_student(tx, sid) for sid in student_ids) if u is not None]
            now = self.clock()
            for unit in units:
                record = change(unit.record, unit).adopting(unit.want.course_ids)
                unit.commit(tx, record, now)
                if announce_from is not None:
                    for course in sorted(record.enrolled - announce_from.get(unit.student_id, frozenset())):
                        self.announcer.announce(tx, ENROLLMENT_GRANTED, unit, course, reason=None, now=now)
                        granted += 1
                if not record.next_steps(unit.want.course_ids) and unit.queue is not None:
                    tx.delete(QUEUE, unit.student_id)

        self.store.transaction(work)
        return granted


def _intend_all(record: LmsRecord, courses: Sequence[str], at: str) -> LmsRecord:
    for course in courses:
        record = record.intending(Intent("enroll", course, at, task_id="batch"))
    return record


def _new_user(unit: StudentUnit) -> NewUser:
    email = unit.email or ""
    local = email.split("@", 1)[0]
    return NewUser(
        email=email,
        first_name=(unit.doc.get("first_name") or local or "Student")[:100],
        last_name=(unit.doc.get("last_name") or "-")[:100],
        login=login_for(email),
        password=generate_password(),
    )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
