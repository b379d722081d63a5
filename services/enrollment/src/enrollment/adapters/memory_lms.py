"""An in-memory ``LearningPlatform`` for fast, deterministic tests: TalentLMS's semantics, no HTTP.

Same meaning as the real adapters: enroll answers False when already enrolled and unenroll False when not
enrolled; a deleted user is ``LmsUserMissing`` and a removed course ``LmsCourseMissing``; batches start
tasks that settle when polled (after ``task_polls`` polls, or at once with ``settle_tasks()``), with
per-item results (``ok=True`` for "already" items, as the v2 client reports them).

Test controls, all deterministic (no threads, no timers):

- ``fail_next(method, error, times)``: the next calls of ``method`` raise ``error()`` BEFORE acting;
- ``act_then_in_doubt(method, times)``: the next calls of ``method`` TAKE EFFECT, then raise
  ``LmsInDoubt`` (a timeout or 5xx after TalentLMS acted) — a batch's task is created but its id is lost;
- ``reject_auth(True|False)``: every call raises ``LmsAuthRejected`` while on;
- ``delete_user``, ``add_user``, ``add_foreign_enrollment`` (an admin's hand), ``remove_course``,
  ``add_course``, ``fail_next_task`` (the next batch's task fails whole), ``settle_tasks``;
- ``hourly_quota``: when set, every counted call takes one and a spent quota raises ``LmsRateLimited``
  without acting (as the budget does); ``quota()`` is free, as ``GET ratelimit`` is.

``calls`` counts the calls that reached the platform, by method; ``refused`` those stopped before it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import TypeVar

from enrollment.service_layer.ports import (
    LmsAuthRejected,
    LmsCourse,
    LmsCourseMissing,
    LmsError,
    LmsInDoubt,
    LmsPermanentError,
    LmsRateLimited,
    LmsUser,
    LmsUserMissing,
    NewUser,
    Quota,
    TaskItemResult,
    TaskStatus,
)

USER_MISSING = "The requested user does not exist"
COURSE_MISSING = "The requested course does not exist"
ALREADY_ENROLLED = "The requested user is already enrolled in this course"
EMAIL_EXISTS = "A user with the same email address already exists"
INVALID = "Invalid arguments provided"

T = TypeVar("T")


@dataclass
class _Task:
    kind: str  # "users" | "enrollments"
    items: list[object]
    polls: int = 0
    fail: bool = False
    status: TaskStatus | None = None  # set once settled


@dataclass
class _Hooks:
    before: list[tuple[str, Callable[[], LmsError]]] = field(default_factory=list)
    in_doubt: Counter[str] = field(default_factory=Counter)


class InMemoryLearningPlatform:
    """A TalentLMS portal in memory. Thread-safe (one lock); ids are strings of integers from 100."""

    def __init__(
        self,
        courses: dict[str, str] | None = None,
        *,
        task_polls: int = 1,
        hourly_quota: int | None = None,
        quota_window_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.courses = dict(courses or {"7": "Course 7", "9": "Course 9", "11": "Course 11"})
        self.users: dict[str, LmsUser] = {}  # by lower-cased email
        self.enrollments: set[tuple[str, str]] = set()
        self.updated_at: dict[str, float] = {}  # user id -> when created/updated
        self.tasks: dict[str, _Task] = {}
        self.calls: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.task_polls = task_polls
        self.hourly_quota = hourly_quota
        self.quota_window_seconds = quota_window_seconds
        self.clock = clock
        self._quota_used = 0
        self._quota_reset_at = clock() + quota_window_seconds
        self._auth_rejected = False
        self._fail_next_tasks = 0
        self._hooks = _Hooks()
        self._ids = count(100)
        self._task_ids = count(1)
        self._links = count(1)
        self._lock = threading.RLock()

    # --- test controls -----------------------------------------------------------------------------------

    def fail_next(self, method: str, error: Callable[[], LmsError], times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``error()`` before acting (after being counted)."""
        with self._lock:
            self._hooks.before += [(method, error)] * times

    def act_then_in_doubt(self, method: str, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` take effect, then raise ``LmsInDoubt``."""
        with self._lock:
            self._hooks.in_doubt[method] += times

    def reject_auth(self, rejected: bool = True) -> None:
        with self._lock:
            self._auth_rejected = rejected

    def add_user(self, email: str, login: str | None = None) -> LmsUser:
        """A user created behind the API's back (not counted)."""
        with self._lock:
            return self._create_user(email, login or email.split("@", 1)[0])

    def delete_user(self, user_id: str) -> None:
        """As an admin would: the user and their enrollments are gone."""
        with self._lock:
            user = self.user_by_id(user_id)
            if user is None:
                raise KeyError(user_id)
            del self.users[user.email.lower()]
            self.updated_at.pop(user_id, None)
            self.enrollments = {pair for pair in self.enrollments if pair[0] != user_id}

    def add_foreign_enrollment(self, user_id: str, course_id: str) -> None:
        """An admin enrolled the user by hand (not counted): a course CourseBridge never granted."""
        with self._lock:
            self.enrollments.add((user_id, course_id))

    def add_course(self, course_id: str, name: str | None = None) -> None:
        with self._lock:
            self.courses[course_id] = name or f"Course {course_id}"

    def remove_course(self, course_id: str) -> None:
        """The course deleted on the portal; its enrollments go with it."""
        with self._lock:
            self.courses.pop(course_id, None)
            self.enrollments = {pair for pair in self.enrollments if pair[1] != course_id}

    def fail_next_task(self, times: int = 1) -> None:
        """The next ``times`` batches' tasks fail whole (no item applied)."""
        with self._lock:
            self._fail_next_tasks += times

    def settle_tasks(self) -> None:
        """Every task settles now (applies its items)."""
        with self._lock:
            for task in self.tasks.values():
                self._settle(task)

    # --- reading (tests) ---------------------------------------------------------------------------------

    def user_by_id(self, user_id: str) -> LmsUser | None:
        with self._lock:
            return next((u for u in self.users.values() if u.id == user_id), None)

    def enrolled(self, email: str) -> set[str]:
        with self._lock:
            user = self.users.get(email.lower())
            return {course for uid, course in self.enrollments if user and uid == user.id}

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    # --- users -------------------------------------------------------------------------------------------

    def find_user_by_email(self, email: str) -> LmsUser | None:
        with self._lock:
            self._begin("find_user_by_email")
            return self._end("find_user_by_email", self.users.get(email.lower()))

    def find_user_by_id(self, user_id: str) -> LmsUser | None:
        with self._lock:
            self._begin("find_user_by_id")
            return self._end("find_user_by_id", self.user_by_id(user_id))

    def sign_up(self, new_user: NewUser) -> LmsUser:
        with self._lock:
            self._begin("sign_up")
            if not new_user.first_name or not new_user.last_name or "@" not in new_user.email:
                raise LmsPermanentError(INVALID)
            existing = self.users.get(new_user.email.lower())
            user = existing or self._create_user(new_user.email, new_user.login)
            return self._end("sign_up", user)

    def user_courses(self, user_id: str) -> set[str]:
        with self._lock:
            self._begin("user_courses")
            self._require_user(user_id)
            return self._end("user_courses", {c for u, c in self.enrollments if u == user_id})

    def set_user_active(self, user_id: str, active: bool) -> None:
        with self._lock:
            self._begin("set_user_active")
            user = self._require_user(user_id)
            self.users[user.email.lower()] = LmsUser(user.id, user.email, user.login, active)
            self.updated_at[user_id] = self.clock()
            self._end("set_user_active", None)

    # --- enrollments -------------------------------------------------------------------------------------

    def enroll(self, user_id: str, course_id: str) -> bool:
        with self._lock:
            self._begin("enroll")
            self._require_user(user_id)
            self._require_course(course_id)
            added = (user_id, course_id) not in self.enrollments
            self.enrollments.add((user_id, course_id))
            return self._end("enroll", added)

    def unenroll(self, user_id: str, course_id: str) -> bool:
        with self._lock:
            self._begin("unenroll")
            self._require_user(user_id)
            self._require_course(course_id)
            removed = (user_id, course_id) in self.enrollments
            self.enrollments.discard((user_id, course_id))
            return self._end("unenroll", removed)

    # --- courses -----------------------------------------------------------------------------------------

    def list_courses(self) -> list[LmsCourse]:
        with self._lock:
            self._begin("list_courses")
            return self._end("list_courses", [LmsCourse(id=c, name=n) for c, n in self.courses.items()])

    def course_users(self, course_id: str) -> set[str]:
        with self._lock:
            self._begin("course_users")
            self._require_course(course_id)
            return self._end("course_users", {u for u, c in self.enrollments if c == course_id})

    # --- batch -------------------------------------------------------------------------------------------

    def batch_upsert_users(self, users: Sequence[NewUser]) -> str:
        return self._start_task("batch_upsert_users", "users", list(users))

    def batch_enroll(self, pairs: Sequence[tuple[str, str]]) -> str:
        return self._start_task("batch_enroll", "enrollments", list(pairs))

    def task_status(self, task_id: str) -> TaskStatus:
        with self._lock:
            self._begin("task_status")
            task = self.tasks.get(task_id)
            if task is None:
                raise LmsPermanentError("The requested task does not exist")
            task.polls += 1
            if task.polls >= self.task_polls:
                self._settle(task)
            status = task.status or TaskStatus(state="running" if task.polls > 1 else "pending")
            return self._end("task_status", status)

    def users_updated_since(self, since_epoch: float) -> list[LmsUser]:
        with self._lock:
            self._begin("users_updated_since")
            found = [u for u in self.users.values() if self.updated_at.get(u.id, 0.0) >= since_epoch]
            return self._end("users_updated_since", sorted(found, key=lambda u: int(u.id)))

    # --- budget and links --------------------------------------------------------------------------------

    def quota(self) -> Quota:
        with self._lock:
            self._roll_quota()
            limit = self.hourly_quota if self.hourly_quota is not None else 1_000_000
            return Quota(
                limit=limit, remaining=max(0, limit - self._quota_used), reset_at=self._quota_reset_at
            )

    def course_link(self, user_id: str, course_id: str) -> str:
        with self._lock:
            self._begin("course_link")
            self._require_user(user_id)
            self._require_course(course_id)
            if (user_id, course_id) not in self.enrollments:
                raise LmsPermanentError("The requested user is not enrolled in this course")
            link = f"https://lms.invalid/index/gotocourse/key:{next(self._links)},course_id:{course_id}"
            return self._end("course_link", link)

    # --- internals ---------------------------------------------------------------------------------------

    def _begin(self, method: str) -> None:
        """Auth, quota and injected failures: everything that stops a call before it acts."""
        if self._auth_rejected:
            self.refused["auth_rejected"] += 1
            raise LmsAuthRejected("TalentLMS rejected the API key (HTTP 401)", 401)
        if self.hourly_quota is not None:
            self._roll_quota()
            if self._quota_used >= self.hourly_quota:
                self.refused["rate_limited"] += 1
                raise LmsRateLimited("TalentLMS hourly quota spent", self._quota_reset_at - self.clock())
            self._quota_used += 1
        self.calls[method] += 1
        for index, (name, error) in enumerate(self._hooks.before):
            if name == method:
                del self._hooks.before[index]
                raise error()

    def _end(self, method: str, result: T) -> T:
        if self._hooks.in_doubt[method] > 0:
            self._hooks.in_doubt[method] -= 1
            raise LmsInDoubt(f"{method} took effect but its answer was lost")
        return result

    def _roll_quota(self) -> None:
        now = self.clock()
        if now >= self._quota_reset_at:
            self._quota_used = 0
            self._quota_reset_at = now + self.quota_window_seconds

    def _create_user(self, email: str, login: str) -> LmsUser:
        user = LmsUser(id=str(next(self._ids)), email=email, login=login)
        self.users[email.lower()] = user
        self.updated_at[user.id] = self.clock()
        return user

    def _require_user(self, user_id: str) -> LmsUser:
        user = self.user_by_id(user_id)
        if user is None:
            raise LmsUserMissing(USER_MISSING)
        return user

    def _require_course(self, course_id: str) -> None:
        if course_id not in self.courses:
            raise LmsCourseMissing(COURSE_MISSING)

    def _start_task(self, method: str, kind: str, items: list[object]) -> str:
        if not 1 <= len(items) <= 100:
            raise ValueError(f"a TalentLMS batch holds 1 to 100 items, not {len(items)}")
        with self._lock:
            self._begin(method)
            task_id = f"task-{next(self._task_ids)}"
            fail = self._fail_next_tasks > 0
            if fail:
                self._fail_next_tasks -= 1
            self.tasks[task_id] = _Task(kind, items, fail=fail)
            return self._end(method, task_id)

    def _settle(self, task: _Task) -> None:
        if task.status is not None:
            return
        if task.fail:
            task.status = TaskStatus(state="failed")
            return
        results = []
        for index, item in enumerate(task.items):
            ok, message = self._apply_user(item) if task.kind == "users" else self._apply_pair(item)
            results.append(TaskItemResult(index=index, ok=ok, message=message))
        task.status = TaskStatus(state="completed", items=tuple(results))

    def _apply_user(self, item: object) -> tuple[bool, str | None]:
        if not isinstance(item, NewUser) or "@" not in item.email or not item.first_name:
            return False, INVALID
        if item.email.lower() in self.users:
            return True, EMAIL_EXISTS
        self._create_user(item.email, item.login)
        return True, None

    def _apply_pair(self, item: object) -> tuple[bool, str | None]:
        user_id, course_id = item  # type: ignore[misc]
        if self.user_by_id(user_id) is None:
            return False, USER_MISSING
        if course_id not in self.courses:
            return False, COURSE_MISSING
        if (user_id, course_id) in self.enrollments:
            return True, ALREADY_ENROLLED
        self.enrollments.add((user_id, course_id))
        return True, None
