"""An in-memory ``LearningPlatform`` for unit tests and benchmarks: TalentLMS's semantics, no HTTP.

It counts calls per method and can be told to fail (``fail_next``), which is how the saga's error
handling is tested without a network.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from enrollment.service_layer.ports import LmsCourse, LmsError, LmsPermanentError, LmsUser


class InMemoryLearningPlatform:
    def __init__(self, courses: dict[str, str] | None = None) -> None:
        self.courses = dict(courses or {"7": "Course 7", "9": "Course 9", "11": "Course 11"})
        self.users: dict[str, LmsUser] = {}
        self.enrollments: set[tuple[str, str]] = set()
        self.calls: Counter[str] = Counter()
        self._failures: list[tuple[str, Callable[[], LmsError]]] = []
        self._lock = threading.Lock()

    # --- test controls ---------------------------------------------------------------------------------

    def fail_next(self, method: str, error: Callable[[], LmsError], times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``error()`` (after being counted)."""
        self._failures += [(method, error)] * times

    def _call(self, method: str) -> None:
        self.calls[method] += 1
        for index, (name, error) in enumerate(self._failures):
            if name == method:
                del self._failures[index]
                raise error()

    def enrolled(self, email: str) -> set[str]:
        user = self.users.get(email.lower())
        return {course for uid, course in self.enrollments if user and uid == user.id}

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    # --- LearningPlatform --------------------------------------------------------------------------------

    def find_user_by_email(self, email: str) -> LmsUser | None:
        with self._lock:
            self._call("find_user_by_email")
            return self.users.get(email.lower())

    def sign_up(self, *, email: str, first_name: str, last_name: str, login: str, password: str) -> LmsUser:
        with self._lock:
            self._call("sign_up")
            if not first_name or not last_name or "@" not in email:
                raise LmsPermanentError("Invalid arguments provided")
            existing = self.users.get(email.lower())
            if existing is not None:
                return existing
            user = LmsUser(id=str(100 + len(self.users)), email=email, login=login)
            self.users[email.lower()] = user
            return user

    def enroll(self, user_id: str, course_id: str) -> bool:
        with self._lock:
            self._call("enroll")
            if course_id not in self.courses:
                raise LmsPermanentError("The requested course does not exist")
            if (user_id, course_id) in self.enrollments:
                return False
            self.enrollments.add((user_id, course_id))
            return True

    def unenroll(self, user_id: str, course_id: str) -> bool:
        with self._lock:
            self._call("unenroll")
            if (user_id, course_id) not in self.enrollments:
                return False
            self.enrollments.discard((user_id, course_id))
            return True

    def set_user_active(self, user_id: str, active: bool) -> None:
        with self._lock:
            self._call("set_user_active")

    def list_courses(self) -> list[LmsCourse]:
        with self._lock:
            self._call("list_courses")
            return [LmsCourse(id=cid, name=name) for cid, name in self.courses.items()]
