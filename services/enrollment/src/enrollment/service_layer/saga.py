"""The saga's use case: load and decide in one transaction, call the LMS outside it, record the result.

1. **Decide** (one store transaction): merge the signal into its access source (skipped when the event id
   was already processed), resolve the source's courses from the product mapping, copy the source's view
   into every entitlement it covers, and list the entitlements whose desired state differs from the
   recorded LMS state. Unmapped approvals are parked (and announced) here.
2. **Act** (no transaction): ensure the LMS user (a remembered id costs nothing; otherwise one signup,
   which returns the existing user when there is one), then enroll / unenroll.
3. **Record** (a second transaction): store the LMS outcome per entitlement and the outcome events in the
   outbox; re-check the desired state, because another purchase of the same student may have changed it
   meanwhile, and act again if needed.

Transient LMS errors are re-raised after recording what already succeeded (the bus redelivers; the
decision step is idempotent and finds the remaining work again). Permanent errors are recorded on the
entitlement and announced as ``enrollment.failed``.
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
from enrollment.domain.ids import access_doc_id, entitlement_id, student_doc_id
from enrollment.domain.mapping import ProductMapping
from enrollment.domain.saga import AccessSource, Action, Entitlement, Signal
from enrollment.service_layer.ports import LearningPlatform, LmsPermanentError, LmsTransientError

log = structlog.get_logger(__name__)

ACCESSES = "accesses"
ENTITLEMENTS = "entitlements"
STUDENTS = "students"
PRODUCTS = "products"
PARKED = "parked"
EVENT_SOURCE = "coursebridge/enrollment"
PROCESSED_KEPT = 200
MAX_ROUNDS = 3


@dataclass(frozen=True)
class Step:
    entitlement_id: str
    course_id: str
    action: Action


@dataclass
class Plan:
    """What the decision step found to do, with what the LMS calls need."""

    access_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    lms_user_id: str | None
    steps: list[Step] = field(default_factory=list)
    duplicate: bool = False
    parked: bool = False


@dataclass
class Outcome:
    duplicate: bool = False
    parked: bool = False
    enrolled: list[str] = field(default_factory=list)
    unenrolled: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    lms_calls: int = 0


def mapping_from_doc(doc: dict[str, Any] | None) -> ProductMapping | None:
    if doc is None or doc.get("removed"):
        return None
    return ProductMapping.from_json(doc)


class Saga:
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
        self.outbox = outbox or Outbox(store)
        self.clock = clock

    # --- entry points -------------------------------------------------------------------------------

    def handle(self, signal: Signal) -> Outcome:
        """Apply one event's signal; safe to call again with the same signal (redelivery)."""
        return self._run(signal.access_id, signal)

    def redrive(self, access_id: str) -> Outcome:
        """Re-decide an access without a new signal (a parked approval whose product is now mapped)."""
        return self._run(access_id, None)

    # --- the three steps ----------------------------------------------------------------------------

    def _run(self, access_id: str, signal: Signal | None) -> Outcome:
        plan = self.store.transaction(lambda tx: self._decide(tx, access_id, signal))
        outcome = Outcome(duplicate=plan.duplicate, parked=plan.parked)
        rounds = 0
        while plan.steps and rounds < MAX_ROUNDS:
            rounds += 1
            results, transient = self._act(plan, outcome)
            next_steps = self.store.transaction(lambda tx, r=results: self._record(tx, plan, r))
            if transient is not None:
                raise transient
            plan.steps = next_steps
        return outcome

    def _decide(self, tx: Transaction, access_id: str, signal: Signal | None) -> Plan:
        now = self.clock()
        doc_id = access_doc_id(access_id)
        doc = tx.get(ACCESSES, doc_id) or {"access_id": access_id, "courses": [], "processed": []}
        source = AccessSource.from_json({**doc, "access_id": access_id})
        processed: list[str] = list(doc.get("processed") or [])
        duplicate = signal is not None and signal.event_id in processed
        if signal is not None and not duplicate:
            source = source.apply(signal)
            processed = [*processed, signal.event_id][-PROCESSED_KEPT:]
            for key in ("email", "first_name", "last_name"):
                if getattr(signal, key) and not doc.get(key):
                    doc[key] = getattr(signal, key)
        email = doc.get("email")

        mapping = mapping_from_doc(tx.get(PRODUCTS, source.product_id)) if source.product_id else None
        student = tx.get(STUDENTS, student_doc_id(email)) if email else None
        parked_doc = tx.get(PARKED, doc_id)

        courses: list[str] = list(doc.get("courses") or [])
        detached: list[str] = []
        if (
            signal is not None
            and signal.kind == "plan_change"
            and mapping
            and source.plan_id == signal.plan_id
        ):
            wanted = mapping.courses_for(source.plan_id)
            detached = [course for course in courses if course not in wanted]
            courses = [course for course in courses if course in wanted]
            courses += [course for course in wanted if course not in courses]
        if source.active and mapping is not None and email:
            courses += [course for course in mapping.courses_for(source.plan_id) if course not in courses]
        parked = bool(source.active and not courses and email and source.product_id)

        entitlements: dict[str, Entitlement] = {}
        for course in [*courses, *detached]:
            ent_id = entitlement_id(email, course)
            stored = tx.get(ENTITLEMENTS, ent_id)
            entitlements[course] = (
                Entitlement.from_json(stored) if stored else Entitlement.new(ent_id, email, course, now)
            )

        # --- writes (all reads are done) ---
        tx.set(
            ACCESSES,
            doc_id,
            {**doc, **source.to_json(), "courses": courses, "processed": processed, "updated_at": now},
        )
        steps: list[Step] = []
        for course, entitlement in entitlements.items():
            if course in detached:
                entitlement.sources.pop(access_id, None)
            else:
                entitlement.sources[access_id] = source.view()
            entitlement.updated_at = now
            tx.set(ENTITLEMENTS, entitlement.id, entitlement.to_json())
            action = entitlement.next_action()
            if action is not None and not (duplicate and entitlement.failed_reason):
                steps.append(Step(entitlement.id, course, action))
        if parked and parked_doc is None:
            tx.create(
                PARKED,
                doc_id,
                {
                    "access_id": access_id,
                    "product_id": source.product_id,
                    "plan_id": source.plan_id,
                    "transaction": source.transaction,
                    "email": email,
                    "parked_at": now,
                },
            )
            self._announce(
                tx,
                ENROLLMENT_PARKED,
                {
                    "entitlement_id": entitlement_id(email, f"product:{source.product_id}"),
                    "email": email,
                    "lms_user_id": (student or {}).get("lms_user_id"),
                    "course_id": None,
                    "product_id": source.product_id,
                    "transaction": source.transaction,
                    "access_id": access_id,
                    "reason": f"no course mapping for product {source.product_id}",
                    "occurred_at": now,
                },
            )
            log.info("saga.parked", product_id=source.product_id, access_id=access_id)
        elif not parked and parked_doc is not None:
            tx.delete(PARKED, doc_id)
        return Plan(
            access_id=access_id,
            email=email,
            first_name=doc.get("first_name"),
            last_name=doc.get("last_name"),
            lms_user_id=(student or {}).get("lms_user_id"),
            steps=steps,
            duplicate=duplicate,
            parked=parked,
        )

    def _act(self, plan: Plan, outcome: Outcome) -> tuple[list[tuple[Step, str | None]], Exception | None]:
        """Call the LMS for each step: (step, None) on success, (step, reason) on a permanent refusal."""
        results: list[tuple[Step, str | None]] = []
        signup_refused: LmsPermanentError | None = None
        for step in plan.steps:
            try:
                if step.action == "enroll":
                    if plan.lms_user_id is None and signup_refused is not None:
                        raise signup_refused  # one refused signup fails every course, without more calls
                    if plan.lms_user_id is None:
                        try:
                            plan.lms_user_id = self._sign_up(plan, outcome)
                        except LmsPermanentError as error:
                            signup_refused = error
                            raise
                    outcome.lms_calls += 1
                    self.lms.enroll(plan.lms_user_id, step.course_id)
                    outcome.enrolled.append(step.course_id)
                else:
                    if plan.lms_user_id is None:
                        outcome.lms_calls += 1
                        user = self.lms.find_user_by_email(plan.email or "")
                        plan.lms_user_id = user.id if user else None
                    if plan.lms_user_id is not None:
                        outcome.lms_calls += 1
                        self.lms.unenroll(plan.lms_user_id, step.course_id)
                    outcome.unenrolled.append(step.course_id)
                results.append((step, None))
            except LmsPermanentError as error:
                log.warning(
                    "saga.lms_refused", action=step.action, course_id=step.course_id, reason=error.reason
                )
                outcome.failed[step.course_id] = error.reason
                results.append((step, error.reason or "the LMS refused"))
            except LmsTransientError as error:
                log.warning(
                    "saga.lms_unavailable", action=step.action, course_id=step.course_id, error=str(error)
                )
                return results, error
        return results, None

    def _sign_up(self, plan: Plan, outcome: Outcome) -> str:
        email = plan.email or ""
        local = email.split("@", 1)[0]
        outcome.lms_calls += 1
        user = self.lms.sign_up(
            email=email,
            first_name=(plan.first_name or local or "Student")[:100],
            last_name=(plan.last_name or "-")[:100],
            login=login_for(email),
            password=generate_password(),
        )
        return user.id

    def _record(self, tx: Transaction, plan: Plan, results: list[tuple[Step, str | None]]) -> list[Step]:
        now = self.clock()
        stored = {step.entitlement_id: tx.get(ENTITLEMENTS, step.entitlement_id) for step, _ in results}
        student_id = student_doc_id(plan.email) if plan.email else None
        student = tx.get(STUDENTS, student_id) if student_id else None
        if student_id and plan.lms_user_id and (student or {}).get("lms_user_id") != plan.lms_user_id:
            tx.set(
                STUDENTS,
                student_id,
                {**(student or {"created_at": now}), "email": plan.email, "lms_user_id": plan.lms_user_id},
            )
        next_steps: list[Step] = []
        for step, failure in results:
            entitlement = Entitlement.from_json(stored[step.entitlement_id])  # written by _decide
            if failure is None:
                entitlement.record(step.action, now)
                event_type = ENROLLMENT_GRANTED if step.action == "enroll" else ENROLLMENT_REVOKED
                granted_by = entitlement.granting_source(plan.access_id)
                reason = None if step.action == "enroll" else entitlement.revocation_reason(plan.access_id)
                access_id = granted_by if step.action == "enroll" else plan.access_id
            else:
                entitlement.failed_reason = failure[:1000]
                entitlement.failed_at = now
                event_type, reason, access_id = ENROLLMENT_FAILED, failure[:1000], plan.access_id
            entitlement.updated_at = now
            tx.set(ENTITLEMENTS, entitlement.id, entitlement.to_json())
            view = entitlement.sources.get(access_id or "", {})
            self._announce(
                tx,
                event_type,
                {
                    "entitlement_id": entitlement.id,
                    "email": entitlement.email,
                    "lms_user_id": plan.lms_user_id,
                    "course_id": entitlement.course_id,
                    "product_id": view.get("product_id"),
                    "transaction": view.get("transaction"),
                    "access_id": access_id,
                    "reason": reason,
                    "occurred_at": now,
                },
            )
            action = entitlement.next_action()
            if failure is None and action is not None:
                next_steps.append(Step(entitlement.id, entitlement.course_id, action))
        return next_steps

    def _announce(self, tx: Transaction, event_type: str, data: dict[str, Any]) -> None:
        event = new_event(
            event_type,
            data,
            source=EVENT_SOURCE,
            correlation_id=data.get("transaction") or data.get("access_id") or data["entitlement_id"],
            subject=data["entitlement_id"],
        )
        self.outbox.add(tx, ENROLLMENTS, event, data["entitlement_id"])


def login_for(email: str) -> str:
    """A TalentLMS login derived from the e-mail: readable, unique per address, within the login alphabet."""
    local = "".join(ch for ch in email.split("@", 1)[0] if ch.isalnum() or ch in "._-")[:40] or "student"
    return f"{local}.{student_doc_id(email)[4:12]}"


def generate_password() -> str:
    """Students sign in through the front end's SSO or a reset link; this only satisfies TalentLMS."""
    return secrets.token_urlsafe(12) + "Aa1!"
