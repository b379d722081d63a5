"""Drive one student's TalentLMS state to desired state, one call at a time (the quiet path).

Each step is: read the student and decide (transaction) → store the intent (transaction) → call TalentLMS →
store the outcome and its announcement (transaction). A crash between intent and outcome leaves the intent
behind; so does a call whose outcome is unknown (``LmsInDoubt``). The next decision for that student then
is a read-back of TalentLMS's own state, never a guess, so TalentLMS and the store cannot stay apart.

Errors are handled by meaning (see ``service_layer.ports``): a 429 or a rejected key stops the round
without touching the record (the call did not act), a missing user is re-resolved, a missing course waits
for a mapping change, other refusals are recorded for a person and announced as ``enrollment.failed``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from coursebridge.events import new_event
from coursebridge.events.enrollments import (
    ENROLLMENT_FAILED,
    ENROLLMENT_GRANTED,
    ENROLLMENT_PARKED,
    ENROLLMENT_REVOKED,
)
from coursebridge.events.envelope import format_time, utc_now
from coursebridge.outbox import Outbox
from coursebridge.ports import DocumentStore, Transaction
from coursebridge.topology import ENROLLMENTS
from enrollment.domain.ids import entitlement_id, student_doc_id
from enrollment.domain.lms_record import Intent, IntentOp, LmsRecord, Step
from enrollment.service_layer.ports import (
    LearningPlatform,
    LmsAuthRejected,
    LmsCourseMissing,
    LmsInDoubt,
    LmsPermanentError,
    LmsRateLimited,
    LmsUnavailable,
    LmsUserMissing,
    NewUser,
)
from enrollment.service_layer.repository import QUEUE, StudentUnit, load_student

log = structlog.get_logger(__name__)

EVENT_SOURCE = "coursebridge/enrollment"
MAX_STEPS = 24  # per student and turn; a student needing more goes back to the queue
IN_DOUBT_RETRY_SECONDS = 2.0
UNAVAILABLE_RETRY_SECONDS = 10.0


@dataclass
class Turn:
    """What one turn for one student did, and why it stopped."""

    converged: bool = False
    calls: int = 0
    enrolled: list[str] = field(default_factory=list)
    unenrolled: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    retry_in: float | None = None  # back in the queue after this many seconds
    rate_limited_for: float | None = None  # the whole dispatcher waits
    auth_rejected: LmsAuthRejected | None = None  # the whole dispatcher pauses


class Announcer:
    """Outcome events (``enrollment.*``) through the outbox, in the transaction that records them."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def announce(
        self,
        tx: Transaction,
        event_type: str,
        unit: StudentUnit,
        course_id: str | None,
        *,
        reason: str | None,
        now: str,
        access_id: str | None = None,
    ) -> None:
        email = unit.email or ""
        granting = unit.want.courses.get(course_id or "", ())
        access_id = access_id or (granting[0] if granting else _latest_source(unit, course_id))
        source = next((s for s in unit.sources if s.access_id == access_id), None)
        ent_id = entitlement_id(email, course_id or f"product:{source.product_id if source else '-'}")
        data: dict[str, Any] = {
            "entitlement_id": ent_id,
            "email": email or None,
            "lms_user_id": unit.record.user_id,
            "course_id": course_id,
            "product_id": source.product_id if source else None,
            "transaction": source.transaction if source else None,
            "access_id": access_id,
            "reason": reason[:1000] if reason else None,
            "occurred_at": now,
        }
        event = new_event(
            event_type,
            data,
            source=EVENT_SOURCE,
            correlation_id=data["transaction"] or access_id or ent_id,
            subject=ent_id,
        )
        self.outbox.add(tx, ENROLLMENTS, event, ent_id)


def _latest_source(unit: StudentUnit, course_id: str | None) -> str | None:
    """For a removal: the source whose change ended the access most recently."""
    ended = sorted(
        (s for s in unit.sources if not s.active and s.changed_at), key=lambda s: s.changed_at or ""
    )
    return ended[-1].access_id if ended else (unit.sources[0].access_id if unit.sources else None)


def removal_reason(unit: StudentUnit) -> str:
    ended = [s for s in unit.sources if not s.active and s.reason]
    if ended:
        latest = max(ended, key=lambda s: s.changed_at or "")
        return latest.reason or "no active purchase or subscription covers the course"
    return "no active purchase or subscription covers the course"


class Reconciler:
    def __init__(
        self,
        store: DocumentStore,
        lms: LearningPlatform,
        *,
        outbox: Outbox | None = None,
        clock: Callable[[], str] = lambda: format_time(utc_now()),
    ) -> None:
        self.store = store
        self.lms = lms
        self.announcer = Announcer(outbox or Outbox(store))
        self.clock = clock

    # --- one turn ------------------------------------------------------------------------------------------

    def turn(self, student_id: str, queue_seq: int | None = None) -> Turn:
        """Work on the student until converged, a limit is hit or a call is in doubt."""
        turn = Turn()
        for _ in range(MAX_STEPS):
            step = self.store.transaction(lambda tx: self._decide(tx, student_id, queue_seq))
            if step is None:
                turn.converged = True
                return turn
            if not self._do(student_id, step, turn):
                return turn
        turn.retry_in = 0.0
        return turn

    def _decide(self, tx: Transaction, student_id: str, queue_seq: int | None) -> Step | None:
        """The next step; when there is none, record adoption, refresh parked and leave the queue."""
        unit = load_student(tx, student_id)
        if unit is None:
            if queue_seq is not None:
                tx.delete(QUEUE, student_id)
            return None
        want = unit.want
        record = unit.record.adopting(want.course_ids)
        steps = record.next_steps(want.course_ids)
        if steps:
            if record != unit.record:
                unit.commit(tx, record, self.clock())
            return steps[0]
        now = self.clock()
        newly_parked = set(want.parked) - {
            doc["access_id"] for doc in unit.parked_docs.values() if doc is not None
        }
        unit.commit(tx, record, now)
        for access_id in sorted(newly_parked):
            source = next(s for s in unit.sources if s.access_id == access_id)
            self.announcer.announce(
                tx,
                ENROLLMENT_PARKED,
                unit,
                None,
                reason=f"no course mapping for product {source.product_id}",
                now=now,
                access_id=access_id,
            )
            log.info("enrollment.parked", product_id=source.product_id)
        # Leave the queue only if nothing new arrived since this turn began (``seq`` grows on enqueue).
        if unit.queue is not None and (queue_seq is None or int(unit.queue.get("seq") or 0) == queue_seq):
            tx.delete(QUEUE, student_id)
        return None

    # --- one step ------------------------------------------------------------------------------------------

    def _do(self, student_id: str, step: Step, turn: Turn) -> bool:
        """Carry out one step; False when the turn must stop here."""
        if step.kind == "read_back":
            return self._read_back(student_id, turn)
        if step.kind == "resolve_user":
            return self._resolve_user(student_id, turn)
        return self._change(student_id, step, turn)

    def _read_back(self, student_id: str, turn: Turn) -> bool:
        unit = self._load(student_id)
        record = unit.record
        try:
            if record.user_id is None:
                # An in-doubt sign-up: did it create the user?
                turn.calls += 1
                user = self.lms.find_user_by_email(unit.email or "")
                if user is None:
                    self._update(student_id, lambda r: r.not_done("sign_up", None))
                    return True
                self._update(student_id, lambda r: r.user_resolved(user.id, user.courses))
                return True
            turn.calls += 1
            actual = frozenset(self.lms.user_courses(record.user_id))
        except LmsUserMissing:
            self._update(student_id, LmsRecord.user_missing)
            return True
        except (LmsInDoubt, LmsUnavailable):
            turn.retry_in = UNAVAILABLE_RETRY_SECONDS
            return False
        except LmsRateLimited as limited:
            turn.rate_limited_for = limited.retry_after
            return False
        except LmsAuthRejected as rejected:
            turn.auth_rejected = rejected
            return False
        now = self.clock()
        self._update(student_id, lambda r: r.read_back(actual, now))
        log.info("enrollment.read_back", lms_user_id=record.user_id, courses=len(actual))
        return True

    def _resolve_user(self, student_id: str, turn: Turn) -> bool:
        unit = self._intend(student_id, Intent("sign_up", None, self.clock()))
        email = unit.email or ""
        local = email.split("@", 1)[0]
        new_user = NewUser(
            email=email,
            first_name=(unit.doc.get("first_name") or local or "Student")[:100],
            last_name=(unit.doc.get("last_name") or "-")[:100],
            login=login_for(email),
            password=generate_password(),
        )
        try:
            turn.calls += 1
            user = self.lms.sign_up(new_user)
        except LmsInDoubt:
            turn.retry_in = IN_DOUBT_RETRY_SECONDS
            return False
        except LmsPermanentError as refused:
            self._update(student_id, lambda r: r.not_done("sign_up", None))
            self._fail_all(student_id, f"TalentLMS refused to create the user: {refused.reason}", turn)
            return False
        except Exception as error:
            return self._stopped(student_id, "sign_up", None, error, turn)
        self._update(student_id, lambda r: r.user_resolved(user.id, user.courses))
        return True

    def _change(self, student_id: str, step: Step, turn: Turn) -> bool:
        op: IntentOp = "enroll" if step.kind == "enroll" else "unenroll"
        course = step.course_id or ""
        unit = self._intend(student_id, Intent(op, course, self.clock()))
        user_id = unit.record.user_id or ""
        try:
            turn.calls += 1
            if op == "enroll":
                self.lms.enroll(user_id, course)
            else:
                self.lms.unenroll(user_id, course)
        except LmsInDoubt:
            log.warning("enrollment.in_doubt", action=op, course_id=course, lms_user_id=user_id)
            turn.retry_in = IN_DOUBT_RETRY_SECONDS
            return False
        except LmsUserMissing:
            log.warning("enrollment.user_missing", lms_user_id=user_id)
            self._update(student_id, LmsRecord.user_missing)
            return True
        except LmsCourseMissing as missing:
            self._refuse(student_id, course, missing.reason, turn, blocked=True)
            return True
        except LmsPermanentError as refused:
            self._refuse(student_id, course, refused.reason, turn, blocked=False)
            return True
        except Exception as error:
            return self._stopped(student_id, op, course, error, turn)
        self._confirm(student_id, op, course)
        (turn.enrolled if op == "enroll" else turn.unenrolled).append(course)
        return True

    # --- recording -----------------------------------------------------------------------------------------

    def _stopped(
        self, student_id: str, op: IntentOp, course: str | None, error: Exception, turn: Turn
    ) -> bool:
        """A call that certainly did not act: forget its intent, and say why the turn stops."""
        if isinstance(error, LmsRateLimited):
            turn.rate_limited_for = error.retry_after
        elif isinstance(error, LmsAuthRejected):
            turn.auth_rejected = error
        elif isinstance(error, LmsUnavailable):
            turn.retry_in = UNAVAILABLE_RETRY_SECONDS
        else:
            raise error  # a bug or a store outage: the intent stays, the next turn reads back
        self._update(student_id, lambda r: r.not_done(op, course))
        return False

    def _load(self, student_id: str) -> StudentUnit:
        unit = self.store.transaction(lambda tx: load_student(tx, student_id))
        if unit is None:
            raise LookupError("student vanished")
        return unit

    def _intend(self, student_id: str, intent: Intent) -> StudentUnit:
        def work(tx: Transaction) -> StudentUnit:
            unit = load_student(tx, student_id)
            if unit is None:
                raise LookupError("student vanished")
            unit.commit(tx, unit.record.intending(intent), self.clock())
            return unit

        return self.store.transaction(work)

    def _update(self, student_id: str, change: Callable[[LmsRecord], LmsRecord]) -> None:
        def work(tx: Transaction) -> None:
            unit = load_student(tx, student_id)
            if unit is not None:
                unit.commit(tx, change(unit.record), self.clock())

        self.store.transaction(work)

    def _confirm(self, student_id: str, op: IntentOp, course: str) -> None:
        def work(tx: Transaction) -> None:
            unit = load_student(tx, student_id)
            if unit is None:
                return
            now = self.clock()
            unit.commit(tx, unit.record.confirmed(op, course), now)
            if op == "enroll":
                self.announcer.announce(tx, ENROLLMENT_GRANTED, unit, course, reason=None, now=now)
            else:
                reason = removal_reason(unit)
                self.announcer.announce(tx, ENROLLMENT_REVOKED, unit, course, reason=reason, now=now)

        self.store.transaction(work)

    def _refuse(self, student_id: str, course: str, reason: str, turn: Turn, *, blocked: bool) -> None:
        log.warning("enrollment.lms_refused", course_id=course, reason=reason, waits_for_mapping=blocked)
        turn.failed[course] = reason

        def work(tx: Transaction) -> None:
            unit = load_student(tx, student_id)
            if unit is None:
                return
            now = self.clock()
            record = (
                unit.record.course_missing(course, reason) if blocked else unit.record.refused(course, reason)
            )
            unit.commit(tx, record, now)
            self.announcer.announce(tx, ENROLLMENT_FAILED, unit, course, reason=reason, now=now)

        self.store.transaction(work)

    def _fail_all(self, student_id: str, reason: str, turn: Turn) -> None:
        unit = self._load(student_id)
        for course in sorted(unit.want.course_ids - unit.record.enrolled):
            self._refuse(student_id, course, reason, turn, blocked=False)


def login_for(email: str) -> str:
    """A TalentLMS login derived from the e-mail: readable, unique per address, within the login alphabet."""
    local = "".join(ch for ch in email.split("@", 1)[0] if ch.isalnum() or ch in "._-")[:40] or "student"
    return f"{local}.{student_doc_id(email)[4:12]}"


def generate_password() -> str:
    """Students sign in through a one-click link or a reset e-mail; this only satisfies TalentLMS."""
    return secrets.token_urlsafe(12) + "Aa1!"
