"""What CourseBridge knows of one student on TalentLMS, and the next step toward desired state. Pure.

The record is the *observed* side of the controller:

- ``user_id``  — the TalentLMS user (``None`` until resolved by e-mail or created);
- ``enrolled`` — courses TalentLMS has for the user, as last confirmed or read back;
- ``managed``  — the subset CourseBridge is responsible for: courses it enrolled, or that a purchase
  covered while they were there. Only these are ever removed; an enrollment someone made by hand for a
  course nobody paid for is reported by the audit, never touched;
- ``intents``  — calls that were started and whose outcome is not recorded. A crash, a timeout or a 5xx
  leaves an intent behind, and an intent means *in doubt*: the next step is always to read TalentLMS back,
  before anything else is decided for that student;
- ``failures`` / ``blocked`` — courses TalentLMS refused (a person must look) or that do not exist (waits
  for a mapping change). Both are cleared by a resync or a mapping change.

``next_steps(want)`` compares desired courses with the record and says what to do; the outcome methods
return the record after a confirmed, refused or in-doubt call. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

IntentOp = Literal["sign_up", "enroll", "unenroll"]
StepKind = Literal["read_back", "resolve_user", "enroll", "unenroll"]


@dataclass(frozen=True)
class Intent:
    """A call about to be made (stored before it is sent). ``task_id``: the batch task carrying it."""

    op: IntentOp
    course_id: str | None
    at: str
    task_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "course_id": self.course_id, "at": self.at, "task_id": self.task_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Intent:
        return cls(data["op"], data.get("course_id"), data["at"], data.get("task_id"))


@dataclass(frozen=True)
class Step:
    kind: StepKind
    course_id: str | None = None


@dataclass(frozen=True)
class LmsRecord:
    user_id: str | None = None
    enrolled: frozenset[str] = frozenset()
    managed: frozenset[str] = frozenset()
    intents: tuple[Intent, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    observed_at: str | None = None
    read_back_requested: bool = False

    # --- deciding ---------------------------------------------------------------------------------------

    @property
    def in_doubt(self) -> bool:
        return bool(self.intents) or self.read_back_requested

    def adopting(self, want: frozenset[str]) -> LmsRecord:
        """Courses that are wanted and already there become CourseBridge's to manage (and to remove later)."""
        adopt = (want & self.enrolled) - self.managed
        return replace(self, managed=self.managed | adopt) if adopt else self

    def next_steps(self, want: frozenset[str]) -> list[Step]:
        """Every call that would bring TalentLMS to ``want``; a read-back alone while anything is in doubt."""
        if self.in_doubt:
            return [Step("read_back")]
        to_enroll = sorted(want - self.enrolled - set(self.failures) - set(self.blocked))
        to_remove = sorted((self.managed & self.enrolled) - want)
        steps: list[Step] = []
        if to_enroll and self.user_id is None:
            steps.append(Step("resolve_user"))
        elif to_enroll:
            steps += [Step("enroll", course) for course in to_enroll]
        if self.user_id is not None:
            steps += [Step("unenroll", course) for course in to_remove]
        return steps

    def foreign(self, want: frozenset[str]) -> frozenset[str]:
        """Enrolled courses CourseBridge never made and no purchase covers: reported, never touched."""
        return self.enrolled - self.managed - want

    # --- outcomes -----------------------------------------------------------------------------------------

    def intending(self, intent: Intent) -> LmsRecord:
        return replace(self, intents=(*self.intents, intent))

    def _without(self, op: IntentOp, course_id: str | None) -> tuple[Intent, ...]:
        return tuple(i for i in self.intents if not (i.op == op and i.course_id == course_id))

    def confirmed(self, op: IntentOp, course_id: str) -> LmsRecord:
        """TalentLMS did it (or it was already so: "already enrolled" / "not enrolled")."""
        failures = {k: v for k, v in self.failures.items() if k != course_id}
        if op == "enroll":
            return replace(
                self,
                enrolled=self.enrolled | {course_id},
                managed=self.managed | {course_id},
                intents=self._without(op, course_id),
                failures=failures,
            )
        return replace(
            self,
            enrolled=self.enrolled - {course_id},
            managed=self.managed - {course_id},
            intents=self._without(op, course_id),
            failures=failures,
        )

    def not_done(self, op: IntentOp, course_id: str | None) -> LmsRecord:
        """The call certainly did not act (429, key rejected, not reached): forget the intent."""
        return replace(self, intents=self._without(op, course_id))

    def refused(self, course_id: str, reason: str) -> LmsRecord:
        intents = tuple(i for i in self.intents if i.course_id != course_id)
        return replace(self, intents=intents, failures={**self.failures, course_id: reason[:300]})

    def course_missing(self, course_id: str, reason: str) -> LmsRecord:
        intents = tuple(i for i in self.intents if i.course_id != course_id)
        return replace(self, intents=intents, blocked={**self.blocked, course_id: reason[:300]})

    def user_resolved(self, user_id: str, courses: frozenset[str] | None) -> LmsRecord:
        """The user is known; ``courses`` when the answer listed them, else a read-back comes next."""
        intents = self._without("sign_up", None)
        if user_id == self.user_id and courses is None:
            return replace(self, intents=intents)
        if courses is None:
            # Another user (found by e-mail, or re-created after a deletion): its courses are unknown.
            return replace(
                self,
                user_id=user_id,
                enrolled=frozenset(),
                managed=frozenset(),
                intents=intents,
                read_back_requested=True,
            )
        managed = self.managed & courses if user_id == self.user_id else frozenset()
        return replace(self, user_id=user_id, enrolled=courses, managed=managed, intents=intents)

    def user_missing(self) -> LmsRecord:
        """The remembered user is gone from TalentLMS, and its enrollments with it: resolve again."""
        return replace(
            self,
            user_id=None,
            enrolled=frozenset(),
            managed=frozenset(),
            intents=(),
            read_back_requested=False,
        )

    def read_back(self, actual: frozenset[str], at: str) -> LmsRecord:
        """TalentLMS's own answer settles every intent. An intended enrollment found there is ours; a
        managed course found missing (removed by hand, or our removal did act) is no longer ours."""
        ours = set(self.managed)
        for intent in self.intents:
            if intent.course_id is None:
                continue
            if intent.op == "enroll" and intent.course_id in actual:
                ours.add(intent.course_id)
            if intent.op == "unenroll" and intent.course_id not in actual:
                ours.discard(intent.course_id)
        return replace(
            self,
            enrolled=actual,
            managed=frozenset(ours) & actual,
            intents=(),
            observed_at=at,
            read_back_requested=False,
        )

    def settled(self, membership: Mapping[str, bool], at: str) -> LmsRecord:
        """Membership read from course rosters (one call per course, e.g. after a batch) settles the
        intents on those courses; intents on other courses stay in doubt."""
        enrolled, managed = set(self.enrolled), set(self.managed)
        rest: list[Intent] = []
        for intent in self.intents:
            course = intent.course_id
            if course is None or course not in membership:
                rest.append(intent)
            elif intent.op == "enroll" and membership[course]:
                managed.add(course)
        for course, present in membership.items():
            if present:
                enrolled.add(course)
            else:
                enrolled.discard(course)
                managed.discard(course)
        return replace(
            self,
            enrolled=frozenset(enrolled),
            managed=frozenset(managed & enrolled),
            intents=tuple(rest),
            observed_at=at,
        )

    def resync(self) -> LmsRecord:
        """An operator's retry: forget refusals, re-read TalentLMS first, then act."""
        return replace(self, failures={}, blocked={}, read_back_requested=self.user_id is not None)

    def unblocked(self) -> LmsRecord:
        """A mapping changed: courses that did not exist or were refused are tried again."""
        if not self.failures and not self.blocked:
            return self
        return replace(self, failures={}, blocked={})

    # --- storage -------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "enrolled": sorted(self.enrolled),
            "managed": sorted(self.managed),
            "intents": [intent.to_json() for intent in self.intents],
            "failures": dict(sorted(self.failures.items())),
            "blocked": dict(sorted(self.blocked.items())),
            "observed_at": self.observed_at,
            "read_back_requested": self.read_back_requested,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> LmsRecord:
        if not data:
            return cls()
        return cls(
            user_id=data.get("user_id"),
            enrolled=frozenset(data.get("enrolled") or ()),
            managed=frozenset(data.get("managed") or ()),
            intents=tuple(Intent.from_json(i) for i in data.get("intents") or ()),
            failures=dict(data.get("failures") or {}),
            blocked=dict(data.get("blocked") or {}),
            observed_at=data.get("observed_at"),
            read_back_requested=bool(data.get("read_back_requested")),
        )
