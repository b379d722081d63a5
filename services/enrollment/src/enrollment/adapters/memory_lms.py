"""An in-memory ``LearningPlatform`` for tests and benchmarks: TalentLMS's semantics, no HTTP.

What makes TalentLMS hard is reproduced: enrollment is not idempotent (the adapter reports "already" as
success, as the real adapter does), users can be deleted behind CourseBridge's back, people enroll users
by hand, calls can act and then fail (``in_doubt_after``), and batch tasks finish later and may fail per
item. Every call is counted, and an hourly quota can be set, so call budgets can be asserted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from enrollment.service_layer.ports import (
    TIMELINE_LIMIT,
    LmsAuthRejected,
    LmsCourse,
    LmsCourseMissing,
    LmsError,
    LmsInDoubt,
    LmsRateLimited,
    LmsUser,
    LmsUserMissing,
    NewUser,
    Quota,
    TaskItemResult,
    TaskStatus,
    TimelineEntry,
)

# How a scheduled fault strikes: before the call acts (nothing happened) or after (it did, but the
# caller cannot know).
BEFORE = "before"
AFTER = "after"


@dataclass
class _Task:
    items: list[Callable[[], tuple[bool, str | None]]]
    polls_left: int
    results: list[TaskItemResult] = field(default_factory=list)
    done: bool = False


class InMemoryLearningPlatform:
    def __init__(
        self,
        courses: dict[str, str] | None = None,
        *,
        hourly_quota: int | None = None,
        task_polls: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.courses = dict(
            courses or {"7": "Course 7", "9": "Course 9", "11": "Course 11", "12": "Course 12"}
        )
        self.users: dict[str, LmsUser] = {}  # by id
        self.enrollments: set[tuple[str, str]] = set()
        self.calls: Counter[str] = Counter()
        self.hourly_quota = hourly_quota
        self.task_polls = task_polls
        self.clock = clock
        self._window_start = clock()
        self._used = 0
        self._next_id = 1
        self._tasks: dict[str, _Task] = {}
        self._faults: list[tuple[str, str, Callable[[], LmsError]]] = []
        self._auth_rejected = False
        self._lock = threading.RLock()
        self._updated: dict[str, float] = {}
        self.timeline_events: list[TimelineEntry] = []  # everything that happened; a read sees the last 200

    # --- test controls ---------------------------------------------------------------------------------

    def fail_next(
        self, method: str, error: Callable[[], LmsError], times: int = 1, when: str = BEFORE
    ) -> None:
        """The next ``times`` calls of ``method`` raise ``error()``; ``when=AFTER``: after acting."""
        with self._lock:
            self._faults += [(method, when, error)] * times

    def in_doubt_after(self, method: str, times: int = 1) -> None:
        """The next calls of ``method`` act, then their answer is lost (a timeout or a 500)."""
        self.fail_next(method, lambda: LmsInDoubt("the answer was lost"), times, when=AFTER)

    def reject_key(self, rejected: bool = True) -> None:
        with self._lock:
            self._auth_rejected = rejected

    def delete_user(self, user_id: str) -> None:
        """An administrator deletes the user in TalentLMS (its enrollments go with it)."""
        with self._lock:
            self.users.pop(user_id, None)
            self.enrollments = {(u, c) for u, c in self.enrollments if u != user_id}

    def enroll_by_hand(self, user_id: str, course_id: str) -> None:
        with self._lock:
            self.enrollments.add((user_id, course_id))

    def unenroll_by_hand(self, user_id: str, course_id: str) -> None:
        with self._lock:
            self.enrollments.discard((user_id, course_id))

    def sign_in(self, user_id: str, at: float | None = None) -> TimelineEntry:
        """The user signs in to TalentLMS (timeline ``user_login_user``) now or ``at``."""
        return self._happen(
            TimelineEntry("user_login_user", user_id, int(self.clock() if at is None else at))
        )

    def complete(self, user_id: str, course_id: str, at: float | None = None) -> TimelineEntry:
        """TalentLMS marks the course completed for the user (timeline ``course_completion``)."""
        when = int(self.clock() if at is None else at)
        return self._happen(TimelineEntry("course_completion", user_id, when, course_id))

    def _happen(self, entry: TimelineEntry) -> TimelineEntry:
        with self._lock:
            self.timeline_events.append(entry)
            return entry

    def user_by_email(self, email: str) -> LmsUser | None:
        with self._lock:
            return next((u for u in self.users.values() if u.email.lower() == email.lower()), None)

    def enrolled(self, email: str) -> set[str]:
        user = self.user_by_email(email)
        with self._lock:
            return {course for uid, course in self.enrollments if user and uid == user.id}

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    # --- plumbing ------------------------------------------------------------------------------------------

    def _call(self, method: str, *, counted: bool = True) -> str | None:
        """Count the call, apply the quota and faults; returns AFTER when the fault strikes after acting."""
        self.calls[method] += 1
        if self._auth_rejected:
            raise LmsAuthRejected("TalentLMS rejected the API key (HTTP 401)", 401)
        if counted and self.hourly_quota is not None:
            now = self.clock()
            if now - self._window_start >= 3600:
                self._window_start, self._used = now, 0
            if self._used >= self.hourly_quota:
                raise LmsRateLimited("hourly quota spent", self._window_start + 3600 - now)
            self._used += 1
        for index, (name, when, error) in enumerate(self._faults):
            if name == method:
                del self._faults[index]
                if when == BEFORE:
                    raise error()
                self._pending_after = error
                return AFTER
        return None

    def _finish(self, strike: str | None) -> None:
        if strike == AFTER:
            raise self._pending_after()

    def _user(self, user_id: str) -> LmsUser:
        user = self.users.get(user_id)
        if user is None:
            raise LmsUserMissing("The requested user does not exist")
        return user

    def _courses_of(self, user_id: str) -> frozenset[str]:
        return frozenset(c for u, c in self.enrollments if u == user_id)

    def _create(self, new_user: NewUser) -> LmsUser:
        existing = self.user_by_email(new_user.email)
        if existing is not None:
            return LmsUser(existing.id, existing.email, existing.login, courses=self._courses_of(existing.id))
        user = LmsUser(str(self._next_id), new_user.email, new_user.login, courses=frozenset())
        self._next_id += 1
        self.users[user.id] = LmsUser(user.id, user.email, user.login)
        self._updated[user.id] = self.clock()
        return user

    # --- users ---------------------------------------------------------------------------------------------

    def find_user_by_email(self, email: str) -> LmsUser | None:
        with self._lock:
            strike = self._call("find_user_by_email")
            user = self.user_by_email(email)
            found = (
                LmsUser(user.id, user.email, user.login, courses=self._courses_of(user.id)) if user else None
            )
            self._finish(strike)
            return found

    def sign_up(self, new_user: NewUser) -> LmsUser:
        with self._lock:
            strike = self._call("sign_up")
            user = self._create(new_user)
            self._finish(strike)
            return user

    def user_courses(self, user_id: str) -> set[str]:
        with self._lock:
            strike = self._call("user_courses")
            self._user(user_id)
            courses = set(self._courses_of(user_id))
            self._finish(strike)
            return courses

    # --- enrollments ---------------------------------------------------------------------------------------

    def enroll(self, user_id: str, course_id: str) -> bool:
        with self._lock:
            strike = self._call("enroll")
            self._user(user_id)
            if course_id not in self.courses:
                raise LmsCourseMissing("The requested course does not exist")
            new = (user_id, course_id) not in self.enrollments
            self.enrollments.add((user_id, course_id))
            self._finish(strike)
            return new

    def unenroll(self, user_id: str, course_id: str) -> bool:
        with self._lock:
            strike = self._call("unenroll")
            self._user(user_id)
            if course_id not in self.courses:
                raise LmsCourseMissing("The requested course does not exist")
            removed = (user_id, course_id) in self.enrollments
            self.enrollments.discard((user_id, course_id))
            self._finish(strike)
            return removed

    # --- courses -------------------------------------------------------------------------------------------

    def list_courses(self) -> list[LmsCourse]:
        with self._lock:
            self._call("list_courses")
            return [LmsCourse(course_id, name) for course_id, name in sorted(self.courses.items())]

    def course_users(self, course_id: str) -> set[str]:
        with self._lock:
            strike = self._call("course_users")
            if course_id not in self.courses:
                raise LmsCourseMissing("The requested course does not exist")
            users = {u for u, c in self.enrollments if c == course_id}
            self._finish(strike)
            return users

    # --- batch ---------------------------------------------------------------------------------------------

    def batch_upsert_users(self, users: Sequence[NewUser]) -> str:
        if len(users) > 100:
            raise ValueError("at most 100 items per batch")
        with self._lock:
            strike = self._call("batch_upsert_users")

            def item(new_user: NewUser) -> Callable[[], tuple[bool, str | None]]:
                def run() -> tuple[bool, str | None]:
                    if self.user_by_email(new_user.email) is not None:
                        return False, "A user with the same email address already exists"
                    self._create(new_user)
                    return True, None

                return run

            task_id = self._task([item(u) for u in users])
            self._finish(strike)
            return task_id

    def batch_enroll(self, pairs: Sequence[tuple[str, str]]) -> str:
        if len(pairs) > 100:
            raise ValueError("at most 100 items per batch")
        with self._lock:
            strike = self._call("batch_enroll")

            def item(user_id: str, course_id: str) -> Callable[[], tuple[bool, str | None]]:
                def run() -> tuple[bool, str | None]:
                    if user_id not in self.users:
                        return False, "The requested user does not exist"
                    if course_id not in self.courses:
                        return False, "The requested course does not exist"
                    if (user_id, course_id) in self.enrollments:
                        return False, "The requested user is already enrolled in this course"
                    self.enrollments.add((user_id, course_id))
                    return True, None

                return run

            task_id = self._task([item(u, c) for u, c in pairs])
            self._finish(strike)
            return task_id

    def _task(self, items: list[Callable[[], tuple[bool, str | None]]]) -> str:
        task_id = f"task-{len(self._tasks) + 1}"
        self._tasks[task_id] = _Task(items, self.task_polls)
        return task_id

    def task_status(self, task_id: str) -> TaskStatus:
        with self._lock:
            strike = self._call("task_status")
            task = self._tasks[task_id]
            task.polls_left -= 1
            if not task.done and task.polls_left <= 0:
                for index, run in enumerate(task.items):
                    ok, message = run()
                    task.results.append(TaskItemResult(index, ok, message))
                task.done = True
            status = TaskStatus("completed", tuple(task.results)) if task.done else TaskStatus("running")
            self._finish(strike)
            return status

    def run_pending_tasks(self) -> None:
        """Let every background task finish (as TalentLMS would, whether anyone polls or not)."""
        with self._lock:
            for task in self._tasks.values():
                if not task.done:
                    for index, run in enumerate(task.items):
                        ok, message = run()
                        task.results.append(TaskItemResult(index, ok, message))
                    task.done = True

    def users_updated_since(self, since_epoch: float) -> list[LmsUser]:
        with self._lock:
            self._call("users_updated_since")
            return [
                self.users[uid]
                for uid, at in self._updated.items()
                if at >= since_epoch and uid in self.users
            ]

    # --- learning activity ---------------------------------------------------------------------------------

    def timeline(
        self, event_type: str, *, user_id: str | None = None, course_id: str | None = None
    ) -> list[TimelineEntry]:
        """The last 200 matching entries (by time, as TalentLMS), oldest first."""
        with self._lock:
            strike = self._call("timeline")
            found = [
                e
                for e in self.timeline_events
                if e.event_type == event_type
                and (user_id is None or e.user_id == user_id)
                and (course_id is None or e.course_id == course_id)
            ]
            found.sort(key=lambda e: (e.occurred_at, e.key))
            self._finish(strike)
            return found[-TIMELINE_LIMIT:]

    # --- budget and links ----------------------------------------------------------------------------------

    def quota(self) -> Quota:
        with self._lock:
            self._call("quota", counted=False)
            limit = self.hourly_quota or 1_000_000
            return Quota(limit, limit - self._used, self._window_start + 3600)

    def course_link(self, user_id: str, course_id: str) -> str:
        with self._lock:
            self._call("course_link")
            self._user(user_id)
            return f"https://lms.invalid/goto/{user_id}/{course_id}"
