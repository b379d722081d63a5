"""The fake portal's state: users, courses, enrollments, rate-limit windows, call counts, injected failures.

Every public method takes the one lock, so a threaded server can call them from any thread. Methods raise
``ApiError`` with TalentLMS's own messages; the Flask layer turns those into HTTP answers.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# The messages public TalentLMS clients match on (see shared/reference/talentlms-api.md).
USER_EMAIL_EXISTS = "A user with the same email address already exists"
USER_LOGIN_EXISTS = "A user with the same login already exists"
USER_NOT_FOUND = "The requested user does not exist"
COURSE_NOT_FOUND = "The requested course does not exist"
ALREADY_ENROLLED = "The requested user is already enrolled in this course"
NOT_ENROLLED = "The requested user is not enrolled in this course"
INVALID_ARGUMENTS = "Invalid arguments provided"
UNKNOWN_ACTION = "The requested API action does not exist"
UNAUTHORIZED = "You need a valid user and password"
# Not confirmed against the real API (v1's wording for these is not public): the fake's own choice.
RATE_LIMITED = "API rate limit exceeded"
SERVER_ERROR = "Internal server error"
# v2 wording (the fake's own choice as well: no source quotes v2's messages).
V2_UNAUTHORIZED = "Invalid or missing API key"
V2_BAD_VERSION = "Missing or unsupported X-API-Version header"
V2_NOT_FOUND = "The requested resource does not exist"
V2_BATCH_SIZE = "A batch holds between 1 and 100 items"
V2_PAGE_SIZE = "page[size] must be between 1 and 100"
V2_BAD_FILTER = "Invalid filter value"
TASK_NOT_FOUND = "The requested task does not exist"
BATCH_MAX_ITEMS = 100
# ``gettimeline`` answers the last TIMELINE_LIMIT events of one type (of those matching its filters).
TIMELINE_LIMIT = 200
TIMELINE_EVENT_TYPES = (
    "course_add_user",
    "course_remove_user",
    "course_completion",
    "course_failure",
    "course_reset_user_progress",
    "user_login_user",
    "unitprogress_test_completion",
    "certification_issue_certification",
)
TIMELINE_FILTERS = ("user_id", "course_id", "branch_id", "group_id", "unit_id")

# none: no failure; 429 / 500: refused before anything happens; acted_500: the action TAKES EFFECT, then
# the answer is a 500; slow: the action takes effect, the answer is held ``seconds``.
FAILURE_MODES = ("none", "429", "500", "acted_500", "slow")
ROLES = ("learner", "instructor")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

DEMO_COURSES: list[dict[str, Any]] = [
    # Hotmart product 4711, "CourseBridge Academy Membership": courses 7 and 9 (plan 102 adds 11).
    {"id": "7", "name": "Academy: Foundations", "code": "ACAD-101"},
    {"id": "9", "name": "Academy: Advanced Techniques", "code": "ACAD-201"},
    {"id": "11", "name": "Academy: Masterclass (premium plan)", "code": "ACAD-301"},
    # Hotmart product 4712, "Spreadsheet Mastery (lifetime access)": course 12.
    {"id": "12", "name": "Spreadsheet Mastery", "code": "SHEET-101"},
]
DEMO_MAPPINGS = {
    "4711": {"course_ids": ["7", "9"], "plans": {"102": ["7", "9", "11"]}},
    "4712": {"course_ids": ["12"]},
}


def _numeric_pair(item: tuple[tuple[str, str], Any]) -> tuple[int, int]:
    (user_id, course_id), _ = item
    return int(user_id), int(course_id)


class ApiError(Exception):
    """An answer of the API other than 200: status, TalentLMS message, error type, extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type}}


def iso_date(epoch: float) -> str:
    """v2's dates: ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def talentlms_date(epoch: float) -> str:
    """TalentLMS's date format, ``DD/MM/YYYY, HH:MM:SS`` (UTC here; a portal uses its own time zone)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%d/%m/%Y, %H:%M:%S")


class _FixedWindow:
    """``limit`` calls per ``seconds``; a window opens at the first call after the previous one ended."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.started: float | None = None
        self.used = 0

    def _roll(self, now: float) -> None:
        if self.started is None or now >= self.started + self.seconds:
            self.started = None
            self.used = 0

    def has_room(self, now: float) -> bool:
        self._roll(now)
        return self.used < self.limit

    def take(self, now: float) -> None:
        self._roll(now)
        if self.started is None:
            self.started = now
        self.used += 1

    def remaining(self, now: float) -> int:
        self._roll(now)
        return max(0, self.limit - self.used)

    def reset_at(self, now: float) -> float:
        self._roll(now)
        return (self.started if self.started is not None else now) + self.seconds

    def headers(self, now: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining(now)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at(now))),
        }


@dataclass
class Failure:
    mode: str = "none"
    seconds: float = 1.0
    remaining: int | None = None  # calls still affected; None = until changed
    endpoint: str | None = None  # only calls to this endpoint (snapshot's ``calls`` key); None = every call

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "seconds": self.seconds,
            "count": self.remaining,
            "endpoint": self.endpoint,
        }


@dataclass
class Task:
    """A v2 batch running "in the background": it settles ``delay`` seconds after it was accepted."""

    id: str
    kind: str  # "users" | "enrollments"
    items: list[Any]
    created_at: float
    settle_at: float
    fail: bool = False  # injected: the whole task fails, no item is applied
    status: str = "pending"
    completed_at: float | None = None
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Counters:
    calls: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    enrolled_total: int = 0
    unenrolled_total: int = 0
    batch_items: Counter[str] = field(default_factory=Counter)
    responses_429: int = 0


class FakeState:
    """One TalentLMS portal in memory."""

    def __init__(
        self,
        courses: Iterable[dict[str, Any]] | None = None,
        *,
        rate_limit: int = 200,
        rate_window_seconds: float = 5.0,
        hourly_quota: int | None = None,
        quota_window_seconds: float = 3600.0,
        task_delay_seconds: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rate_limit < 1 or rate_window_seconds <= 0:
            raise ValueError("rate_limit must be >= 1 and rate_window_seconds > 0")
        if hourly_quota is not None and hourly_quota < 1:
            raise ValueError("hourly_quota must be >= 1 (or None for no hourly quota)")
        if quota_window_seconds <= 0 or task_delay_seconds < 0:
            raise ValueError("quota_window_seconds must be > 0 and task_delay_seconds >= 0")
        self.lock = threading.Lock()
        self.clock = clock
        self.rate_limit = rate_limit
        self.rate_window_seconds = rate_window_seconds
        self.hourly_quota = hourly_quota
        self.quota_window_seconds = quota_window_seconds
        self.task_delay_seconds = task_delay_seconds
        self._initial_courses = [dict(c) for c in (DEMO_COURSES if courses is None else courses)]
        self._reset_locked()

    # --- housekeeping -------------------------------------------------------------------------------------

    def _reset_locked(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.courses: dict[str, dict[str, Any]] = {}
        self.enrollments: dict[tuple[str, str], dict[str, Any]] = {}
        # Kept apart from the user objects, so no answer and no state dump ever includes a password.
        self._passwords: dict[str, str] = {}
        self.next_user_id = 1
        self.window = _FixedWindow(self.rate_limit, self.rate_window_seconds)
        self.hourly = (
            _FixedWindow(self.hourly_quota, self.quota_window_seconds) if self.hourly_quota else None
        )
        self.failure = Failure()
        self.auth_rejected_until = -math.inf
        self.tasks: dict[str, Task] = {}
        self.fail_next_tasks = 0
        self._updated_at: dict[str, float] = {}  # user id -> last change, for v2's last_updated filter
        # Every timeline event ever recorded, oldest first; ``gettimeline`` shows only the last 200.
        self.timeline: list[dict[str, Any]] = []
        self._simulated: set[tuple[str, ...]] = set()  # what the learner simulation already did
        self.counters = _Counters()
        self._add_courses_locked(self._initial_courses)

    def reset(self) -> None:
        """Back to the initial courses, no users, no enrollments, fresh windows and counters."""
        with self.lock:
            self._reset_locked()

    def add_courses(self, courses: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        with self.lock:
            return self._add_courses_locked(courses)

    def _add_courses_locked(self, courses: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        added = []
        now = self.clock()
        for raw in courses:
            course_id = str(raw.get("id", "")).strip()
            name = str(raw.get("name", "")).strip()
            if not course_id.isdigit() or not name:
                raise ValueError("a course needs a numeric id and a name")
            course = {
                "id": course_id,
                "name": name,
                "code": str(raw.get("code", "")),
                "category_id": str(raw.get("category_id", "1")),
                "description": str(raw.get("description", "")),
                "price": str(raw.get("price", "&#36;0.00")),
                "status": str(raw.get("status", "active")),
                "creation_date": talentlms_date(now),
                "last_update_on": talentlms_date(now),
                "creator_id": "1",
                "hide_from_catalog": "0",
                "time_limit": "0",
                "start_datetime": None,
                "expiration_datetime": None,
                "level": None,
                "shared": "0",
                "shared_url": "",
                "avatar": "",
                "big_avatar": "",
                "certification": None,
                "certification_duration": None,
            }
            self.courses[course_id] = course
            added.append(course)
        return added

    def set_failure(
        self, mode: str, seconds: float | None = None, count: int | None = None, endpoint: str | None = None
    ) -> Failure:
        if mode not in FAILURE_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAILURE_MODES)}")
        if seconds is not None and seconds < 0:
            raise ValueError("seconds must be >= 0")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 (or absent for 'until changed')")
        with self.lock:
            self.failure = Failure(mode, 1.0 if seconds is None else float(seconds), count, endpoint or None)
            return self.failure

    def take_failure(self, endpoint: str) -> Failure | None:
        """The failure to inject into this call to ``endpoint``, if any (consumes one of ``count``)."""
        with self.lock:
            failure = self.failure
            if failure.mode == "none":
                return None
            if failure.endpoint is not None and failure.endpoint != endpoint:
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self.failure = Failure()
            if failure.mode == "429":
                self.counters.responses_429 += 1
            if failure.mode != "slow":
                self.counters.rejected["injected_" + failure.mode] += 1
            return Failure(failure.mode, failure.seconds, None, failure.endpoint)

    def count_call(self, action: str) -> None:
        with self.lock:
            self.counters.calls[action] += 1

    def count_rejection(self, reason: str) -> None:
        with self.lock:
            self.counters.rejected[reason] += 1

    def count_error(self, action: str, message: str) -> None:
        with self.lock:
            self.counters.errors[f"{action}: {message}"] += 1

    # --- rate limit ---------------------------------------------------------------------------------------

    def take_quota(self) -> dict[str, str]:
        """Consume one call of the short window (and of the hourly quota); 429 ``ApiError`` when over."""
        with self.lock:
            now = self.clock()
            for window in (self.window, self.hourly):
                if window is not None and not window.has_room(now):
                    self.counters.rejected["rate_limited"] += 1
                    self.counters.responses_429 += 1
                    headers = window.headers(now)
                    headers["Retry-After"] = str(max(1, math.ceil(window.reset_at(now) - now)))
                    raise ApiError(429, RATE_LIMITED, "rate_limit_error", headers)
            self.window.take(now)
            if self.hourly is not None:
                self.hourly.take(now)
            return self.window.headers(now)

    def rate_limit_headers(self) -> dict[str, str]:
        with self.lock:
            return self.window.headers(self.clock())

    def quota_headers(self) -> dict[str, str]:
        """v2's ``X-RateLimit-*``: the hourly quota when one is set, else the short window (fake's choice)."""
        with self.lock:
            return (self.hourly or self.window).headers(self.clock())

    def rate_limit_status(self) -> dict[str, str]:
        """``GET ratelimit``: the hourly quota when one is set (as on a real plan), else the short window."""
        with self.lock:
            now = self.clock()
            window = self.hourly or self.window
            reset = math.ceil(window.reset_at(now))
            return {
                "limit": str(window.limit),
                "remaining": str(window.remaining(now)),
                "reset": str(reset),
                "formatted_reset": talentlms_date(reset),
            }

    # --- users --------------------------------------------------------------------------------------------

    def add_user(
        self,
        *,
        email: str,
        login: str,
        first_name: str,
        last_name: str,
        password: str,
        user_type: str = "Learner-Type",
    ) -> dict[str, Any]:
        for value in (email, login, first_name, last_name, password):
            if not value or not value.strip():
                raise ApiError(400, INVALID_ARGUMENTS)
        email, login = email.strip(), login.strip()
        if not _EMAIL.match(email):
            raise ApiError(400, INVALID_ARGUMENTS)
        with self.lock:
            if any(u["email"].lower() == email.lower() for u in self.users.values()):
                raise ApiError(400, USER_EMAIL_EXISTS)
            if any(u["login"].lower() == login.lower() for u in self.users.values()):
                raise ApiError(400, USER_LOGIN_EXISTS)
            return self._add_user_locked(
                email=email,
                login=login,
                first_name=first_name,
                last_name=last_name,
                password=password,
                user_type=user_type,
            )

    def _add_user_locked(
        self, *, email: str, login: str, first_name: str, last_name: str, password: str, user_type: str
    ) -> dict[str, Any]:
        now = self.clock()
        user_id = str(self.next_user_id)
        self.next_user_id += 1
        user = {
            "id": user_id,
            "login": login,
            "first_name": first_name.strip(),
            "last_name": last_name.strip(),
            "email": email,
            "restrict_email": "0",
            "user_type": user_type,
            "timezone": "(GMT +00:00) UTC",
            "language": "",
            "status": "active",
            "deactivation_date": "",
            "level": "1",
            "points": "0",
            "created_on": talentlms_date(now),
            "last_updated": talentlms_date(now),
            "last_updated_timestamp": str(int(now)),
            "avatar": "",
            "bio": "",
            "login_key": "",
        }
        self.users[user_id] = user
        self._passwords[user_id] = password
        self._updated_at[user_id] = now
        return dict(user)

    def find_user(self, key: str, value: str) -> dict[str, Any]:
        with self.lock:
            if key == "id":
                if not value.isdigit():
                    raise ApiError(400, INVALID_ARGUMENTS)
                user = self.users.get(value)
            elif key in ("email", "username"):
                field_name = "email" if key == "email" else "login"
                user = next((u for u in self.users.values() if u[field_name].lower() == value.lower()), None)
            else:
                raise ApiError(400, INVALID_ARGUMENTS)
            if user is None:
                raise ApiError(404, USER_NOT_FOUND)
            return self._user_with_courses_locked(user)

    def list_users(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(u) for u in self.users.values()]

    def _user_with_courses_locked(self, user: dict[str, Any]) -> dict[str, Any]:
        courses = []
        for (user_id, course_id), enrollment in self.enrollments.items():
            if user_id != user["id"]:
                continue
            course = self.courses.get(course_id, {"name": ""})
            courses.append(
                {
                    "id": course_id,
                    "name": course["name"],
                    "role": enrollment["role"],
                    "enrolled_on": talentlms_date(enrollment["enrolled_at"]),
                    "enrolled_on_timestamp": str(int(enrollment["enrolled_at"])),
                    "completed_on": "",
                    "completed_on_timestamp": None,
                    "completion_status": "not_attempted",
                    "completion_percentage": "0",
                    "expired_on": "",
                    "expired_on_timestamp": None,
                    "total_time": "",
                }
            )
        return {**user, "courses": courses, "branches": [], "groups": [], "certifications": [], "badges": []}

    def set_user_status(self, user_id: str, status: str) -> dict[str, str]:
        if not user_id.isdigit() or status not in ("active", "inactive"):
            raise ApiError(400, INVALID_ARGUMENTS)
        with self.lock:
            user = self.users.get(user_id)
            if user is None:
                raise ApiError(404, USER_NOT_FOUND)
            user["status"] = status
            user["deactivation_date"] = talentlms_date(self.clock()) if status == "inactive" else ""
            self._touch_locked(user)
            return {"user_id": user_id, "status": status}

    # --- courses and enrollments --------------------------------------------------------------------------

    def list_courses(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(c) for c in self.courses.values()]

    def get_course(self, course_id: str) -> dict[str, Any]:
        if not course_id.isdigit():
            raise ApiError(400, INVALID_ARGUMENTS)
        with self.lock:
            course = self.courses.get(course_id)
            if course is None:
                raise ApiError(404, COURSE_NOT_FOUND)
            users = []
            for (user_id, enrolled_course), enrollment in self.enrollments.items():
                if enrolled_course != course_id:
                    continue
                user = self.users[user_id]
                users.append(
                    {
                        "id": user_id,
                        "name": f"{user['first_name']} {user['last_name'][:1]}.",
                        "role": enrollment["role"],
                        "enrolled_on": talentlms_date(enrollment["enrolled_at"]),
                        "enrolled_on_timestamp": str(int(enrollment["enrolled_at"])),
                        "completed_on": "",
                        "completed_on_timestamp": None,
                        "completion_percentage": "0",
                        "expired_on": "",
                        "expired_on_timestamp": None,
                        "total_time": "",
                    }
                )
            return {**course, "users": users, "units": [], "rules": [], "prerequisites": []}

    def _check_user_and_course_locked(self, user_id: str, course_id: str) -> None:
        if not user_id.isdigit() or not course_id.isdigit():
            raise ApiError(400, INVALID_ARGUMENTS)
        if user_id not in self.users:
            raise ApiError(404, USER_NOT_FOUND)
        if course_id not in self.courses:
            raise ApiError(404, COURSE_NOT_FOUND)

    def enroll(self, user_id: str, course_id: str, role: str) -> list[dict[str, str]]:
        if role not in ROLES:
            raise ApiError(400, INVALID_ARGUMENTS)
        with self.lock:
            self._check_user_and_course_locked(user_id, course_id)
            if (user_id, course_id) in self.enrollments:
                raise ApiError(400, ALREADY_ENROLLED)
            self.enrollments[(user_id, course_id)] = {"role": role, "enrolled_at": self.clock()}
            self.counters.enrolled_total += 1
            self._record_locked("course_add_user", user_id, course_id, self.clock())
            return [{"user_id": user_id, "course_id": course_id, "role": role}]

    def unenroll(self, user_id: str, course_id: str) -> dict[str, str]:
        with self.lock:
            self._check_user_and_course_locked(user_id, course_id)
            if self.enrollments.pop((user_id, course_id), None) is None:
                raise ApiError(400, NOT_ENROLLED)
            self.counters.unenrolled_total += 1
            self._record_locked("course_remove_user", user_id, course_id, self.clock())
            course_name = self.courses[course_id]["name"]
            return {"user_id": user_id, "course_id": course_id, "course_name": course_name}

    # --- timeline -----------------------------------------------------------------------------------------

    def _record_locked(
        self, event_type: str, user_id: str, course_id: str | None, at: float
    ) -> dict[str, Any]:
        """Append one timeline event (the fake's shape for the fields TalentLMS names; see the README)."""
        user = self.users.get(user_id, {})
        course = self.courses.get(course_id or "", {}) if course_id else {}
        fullname = f"{user.get('first_name', '')} {user.get('last_name', '')}".strip()
        at = float(int(at))  # TalentLMS's timeline is to the second
        if course_id:
            object_id, object_name = course_id, str(course.get("name", ""))
        else:
            object_id, object_name = user_id, fullname
        event = {
            "action": event_type,
            "message": _timeline_message(event_type, fullname, object_name),
            "timestamp": talentlms_date(at),
            "unix_timestamp": str(int(at)),
            "user_id": user_id,
            "user_username": str(user.get("login", "")),
            "user_email": str(user.get("email", "")),
            "user_fullname": fullname,
            "object_id": object_id,
            "object_name": object_name,
            "secondary_object_id": "",
            "secondary_object_name": "",
            "event_counter": str(len(self.timeline) + 1),
        }
        # Kept in time order, so a back-dated event (a control call "at" a past time) sorts where it belongs.
        index = len(self.timeline)
        while index > 0 and float(self.timeline[index - 1]["unix_timestamp"]) > at:
            index -= 1
        self.timeline.insert(index, event)
        return dict(event)

    def record_event(
        self, event_type: str, user_id: str, course_id: str | None = None, at: float | None = None
    ) -> dict[str, Any]:
        """A learner's action (test control): ``user_login_user`` or ``course_completion`` at ``at``.

        A completion needs the user enrolled in the course; a sign-in needs the user only.
        """
        if event_type not in TIMELINE_EVENT_TYPES:
            raise ValueError(f"event_type must be one of {', '.join(TIMELINE_EVENT_TYPES)}")
        with self.lock:
            if user_id not in self.users:
                raise ApiError(404, USER_NOT_FOUND)
            if course_id is not None:
                if course_id not in self.courses:
                    raise ApiError(404, COURSE_NOT_FOUND)
                if event_type == "course_completion" and (user_id, course_id) not in self.enrollments:
                    raise ApiError(400, NOT_ENROLLED)
            return self._record_locked(event_type, user_id, course_id, self.clock() if at is None else at)

    def get_timeline(self, event_type: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        """``gettimeline``: the LAST 200 events of ``event_type`` matching ``filters``, newest first.

        Older events exist but this call cannot reach them (the trap a poller must detect). The fake has no
        branches, groups or units, so those filters match nothing (fake's choice).
        """
        if event_type not in TIMELINE_EVENT_TYPES:
            raise ApiError(400, INVALID_ARGUMENTS)
        for key, value in filters.items():
            if key not in TIMELINE_FILTERS or not value.isdigit():
                raise ApiError(400, INVALID_ARGUMENTS)
        with self.lock:
            found = []
            for event in reversed(self.timeline):
                if event["action"] != event_type:
                    continue
                if "user_id" in filters and event["user_id"] != filters["user_id"]:
                    continue
                if "course_id" in filters and not (
                    event["object_id"] == filters["course_id"] and event_type.startswith("course_")
                ):
                    continue
                if {"branch_id", "group_id", "unit_id"} & set(filters):
                    continue
                found.append(dict(event))
                if len(found) >= TIMELINE_LIMIT:
                    break
            return found

    def simulate_learners(self, share: float = 0.6, completion_share: float = 0.35) -> int:
        """One tick of the opt-in learner simulation (``make run``): enrolled users sign in and finish.

        Deterministic per (user, course): about ``share`` of enrolled users sign in 5-60 s after their
        first enrolment; about ``completion_share`` of enrolments are completed 20-180 s after the enrolment
        (with a sign-in just before). Events carry their scheduled time, never later than the tick that
        records them. Returns how many events this tick recorded.
        """
        recorded = 0
        with self.lock:
            now = self.clock()
            for (user_id, course_id), enrollment in sorted(self.enrollments.items(), key=_numeric_pair):
                enrolled_at = float(enrollment["enrolled_at"])
                if _fraction("login", user_id) < share:
                    delay = 5 + 55 * _fraction("login-delay", user_id)
                    key = ("login", user_id)
                    if key not in self._simulated and now >= enrolled_at + delay:
                        self._simulated.add(key)
                        self._record_locked("user_login_user", user_id, None, enrolled_at + delay)
                        recorded += 1
                if _fraction("complete", user_id, course_id) < completion_share:
                    delay = 20 + 160 * _fraction("complete-delay", user_id, course_id)
                    key = ("complete", user_id, course_id)
                    if key not in self._simulated and now >= enrolled_at + delay:
                        self._simulated.add(key)
                        # A learner signs in to finish a course.
                        self._record_locked("user_login_user", user_id, None, enrolled_at + delay - 1)
                        self._record_locked("course_completion", user_id, course_id, enrolled_at + delay)
                        recorded += 2
        return recorded

    # --- what tests and benchmarks read -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything a test asserts on (no passwords): see the package README for the shape."""
        with self.lock:
            now = self.clock()
            self._settle_tasks_locked(now)
            return {
                "users": [
                    {k: u[k] for k in ("id", "login", "email", "first_name", "last_name", "status")}
                    for u in self.users.values()
                ],
                "courses": [{"id": c["id"], "name": c["name"]} for c in self.courses.values()],
                "enrollments": [
                    {
                        "user_id": u,
                        "course_id": c,
                        "role": e["role"],
                        "enrolled_on": talentlms_date(e["enrolled_at"]),
                    }
                    for (u, c), e in sorted(self.enrollments.items(), key=_numeric_pair)
                ],
                "calls": dict(self.counters.calls),
                "calls_total": sum(self.counters.calls.values()),
                "rejected": dict(self.counters.rejected),
                "errors": dict(self.counters.errors),
                "enrolled_total": self.counters.enrolled_total,
                "unenrolled_total": self.counters.unenrolled_total,
                "batch_items": dict(self.counters.batch_items),
                "responses_429": self.counters.responses_429,
                "tasks": [
                    {"id": t.id, "type": t.kind, "status": t.status, "items": len(t.items)}
                    for t in self.tasks.values()
                ],
                "auth_rejected_for": max(0.0, self.auth_rejected_until - now),
                "failure": self.failure.as_dict(),
                "rate_limit": {
                    "limit": self.window.limit,
                    "window_seconds": self.window.seconds,
                    "remaining": self.window.remaining(now),
                    "reset": self.window.reset_at(now),
                    "hourly_quota": self.hourly_quota,
                    "hourly_remaining": self.hourly.remaining(now) if self.hourly else None,
                    "quota_window_seconds": self.quota_window_seconds,
                    "hourly_reset": self.hourly.reset_at(now) if self.hourly else None,
                },
            }

    # --- v2 and admin actions -----------------------------------------------------------------------------

    def _touch_locked(self, user: dict[str, Any]) -> None:
        now = self.clock()
        user["last_updated"] = talentlms_date(now)
        user["last_updated_timestamp"] = str(int(now))
        self._updated_at[user["id"]] = now

    def v2_user(self, user: dict[str, Any]) -> dict[str, Any]:
        """A user in v2's shape (integer id, name/surname, ISO dates) [OAS getUsers]."""
        updated = self._updated_at.get(user["id"], 0.0)
        return {
            "id": int(user["id"]),
            "login": user["login"],
            "name": user["first_name"],
            "surname": user["last_name"],
            "email": user["email"],
            "avatar": {"default": "", "sm": "", "md": "", "lg": "", "xl": ""},
            "timezone": user["timezone"],
            "language": user["language"],
            "type": user["user_type"],
            "registration": iso_date(_parse_talentlms_date(user["created_on"])),
            "last_login": None,
            "status": user["status"],
            "last_updated": iso_date(updated),
            "integration_user_id": None,
        }

    def get_user(self, user_id: str) -> dict[str, Any]:
        with self.lock:
            user = self.users.get(user_id) if user_id.isdigit() else None
            if user is None:
                raise ApiError(404, USER_NOT_FOUND)
            return self.v2_user(user)

    def search_users(self, *, email: str | None, updated_since: float | None) -> list[dict[str, Any]]:
        """v2 ``GET /users`` filters, ordered by id."""
        with self.lock:
            found = []
            for user_id in sorted(self.users, key=int):
                user = self.users[user_id]
                if email is not None and user["email"].lower() != email.lower():
                    continue
                if updated_since is not None and self._updated_at.get(user_id, 0.0) < updated_since:
                    continue
                found.append(self.v2_user(user))
            return found

    def delete_user(self, user_id: str) -> dict[str, Any]:
        """As an admin would: the user and their enrollments are gone (v2 ``DELETE /users/{id}``)."""
        with self.lock:
            user = self.users.pop(user_id, None) if user_id.isdigit() else None
            if user is None:
                raise ApiError(404, USER_NOT_FOUND)
            self._passwords.pop(user_id, None)
            self._updated_at.pop(user_id, None)
            for key in [k for k in self.enrollments if k[0] == user_id]:
                del self.enrollments[key]
            return {"id": int(user_id), "deleted": True}

    def remove_course(self, course_id: str) -> None:
        """A course deleted on the portal; its enrollments go with it."""
        with self.lock:
            if self.courses.pop(course_id, None) is None:
                raise ApiError(404, COURSE_NOT_FOUND)
            for key in [k for k in self.enrollments if k[1] == course_id]:
                del self.enrollments[key]

    def user_courses(self, user_id: str) -> list[dict[str, Any]]:
        with self.lock:
            if user_id not in self.users:
                raise ApiError(404, USER_NOT_FOUND)
            return [
                {"id": int(course_id), "name": self.courses[course_id]["name"]}
                for (uid, course_id) in sorted(self.enrollments, key=lambda k: int(k[1]))
                if uid == user_id and course_id in self.courses
            ]

    def goto_url(self, base_url: str, user_id: str, course_id: str) -> str:
        """A one-click link into the course; the fake's choice: the user must be enrolled."""
        with self.lock:
            self._check_user_and_course_locked(user_id, course_id)
            if (user_id, course_id) not in self.enrollments:
                raise ApiError(400, NOT_ENROLLED)
        token = secrets.token_urlsafe(16)
        return f"{base_url.rstrip('/')}/index/gotocourse/key:{token},course_id:{course_id}"

    # --- authentication switch ----------------------------------------------------------------------------

    def reject_auth_for(self, seconds: float) -> None:
        """Every API key is refused (401) for ``seconds`` from now: a rotated key, an API switched off."""
        with self.lock:
            self.auth_rejected_until = self.clock() + max(0.0, seconds)

    def auth_rejected(self) -> bool:
        with self.lock:
            return self.clock() < self.auth_rejected_until

    # --- batch tasks --------------------------------------------------------------------------------------

    def create_task(self, kind: str, items: list[Any]) -> Task:
        if not 1 <= len(items) <= BATCH_MAX_ITEMS:
            raise ApiError(422, V2_BATCH_SIZE)
        with self.lock:
            now = self.clock()
            fail = self.fail_next_tasks > 0
            if fail:
                self.fail_next_tasks -= 1
            task = Task(str(uuid.uuid4()), kind, list(items), now, now + self.task_delay_seconds, fail)
            self.tasks[task.id] = task
            self.counters.batch_items[kind] += len(items)
            self._settle_tasks_locked(now)
            return task

    def configure_tasks(self, *, delay_seconds: float | None = None, fail_next: int | None = None) -> None:
        with self.lock:
            if delay_seconds is not None:
                if delay_seconds < 0:
                    raise ValueError("delay_seconds must be >= 0")
                self.task_delay_seconds = delay_seconds
            if fail_next is not None:
                if fail_next < 0:
                    raise ValueError("fail_next must be >= 0")
                self.fail_next_tasks = fail_next

    def settle_tasks(self) -> None:
        with self.lock:
            self._settle_tasks_locked(self.clock())

    def task_view(self, task_id: str) -> dict[str, Any]:
        """``GET /api/v2/tasks/{id}``'s ``_data`` (the fake's shape: the real one is unconfirmed)."""
        with self.lock:
            now = self.clock()
            self._settle_tasks_locked(now)
            task = self.tasks.get(task_id)
            if task is None:
                raise ApiError(404, TASK_NOT_FOUND)
            status = task.status
            if status == "pending" and now >= (task.created_at + task.settle_at) / 2:
                status = "running"  # the second half of its delay
            succeeded = sum(1 for r in task.results if r["status"] == "succeeded")
            processed = len(task.results) if task.completed_at is not None else 0
            return {
                "id": task.id,
                "type": f"batch_{task.kind}",
                "status": status,
                "progress": {
                    "total": len(task.items),
                    "processed": processed,
                    "succeeded": succeeded,
                    "failed": processed - succeeded,
                },
                "created_at": iso_date(task.created_at),
                "completed_at": iso_date(task.completed_at) if task.completed_at is not None else None,
                "results": [dict(r) for r in task.results] if task.status == "completed" else [],
            }

    def _settle_tasks_locked(self, now: float) -> None:
        for task in self.tasks.values():
            if task.completed_at is not None or now < task.settle_at:
                continue
            task.completed_at = now
            if task.fail:
                task.status = "failed"
                continue
            apply = (
                self._apply_user_item_locked if task.kind == "users" else self._apply_enrollment_item_locked
            )
            for index, item in enumerate(task.items):
                try:
                    result = {"index": index, "status": "succeeded", **apply(item)}
                except ApiError as exc:
                    result = {"index": index, "status": "failed", "message": exc.message}
                task.results.append(result)
            task.status = "completed"

    def _apply_user_item_locked(self, item: Any) -> dict[str, Any]:
        """Create, or update when the item carries ``id`` [PM]; email/login collisions fail the item."""
        if not isinstance(item, dict):
            raise ApiError(422, INVALID_ARGUMENTS)
        if item.get("id") is not None:
            user = self.users.get(str(item["id"]))
            if user is None:
                raise ApiError(404, USER_NOT_FOUND)
            for source, target in (("name", "first_name"), ("surname", "last_name"), ("login", "login")):
                if item.get(source):
                    user[target] = str(item[source]).strip()
            if item.get("status") in ("active", "inactive"):
                user["status"] = item["status"]
            self._touch_locked(user)
            return {"id": int(user["id"])}
        fields = {k: str(item.get(k) or "").strip() for k in ("email", "login", "name", "surname")}
        for value in fields.values():
            if not value:
                raise ApiError(422, INVALID_ARGUMENTS)
        if not _EMAIL.match(fields["email"]):
            raise ApiError(422, INVALID_ARGUMENTS)
        if any(u["email"].lower() == fields["email"].lower() for u in self.users.values()):
            raise ApiError(400, USER_EMAIL_EXISTS)
        if any(u["login"].lower() == fields["login"].lower() for u in self.users.values()):
            raise ApiError(400, USER_LOGIN_EXISTS)
        user = self._add_user_locked(
            email=fields["email"],
            login=fields["login"],
            first_name=fields["name"],
            last_name=fields["surname"],
            password=str(item.get("password") or secrets.token_urlsafe(12)),
            user_type="Learner-Type",
        )
        return {"id": int(user["id"])}

    def _apply_enrollment_item_locked(self, item: Any) -> dict[str, Any]:
        """Enroll one pair; "already enrolled" fails the item, as v1 does (the fake's choice)."""
        if not isinstance(item, dict):
            raise ApiError(422, INVALID_ARGUMENTS)
        user_id, course_id = str(item.get("user_id", "")), str(item.get("course_id", ""))
        self._check_user_and_course_locked(user_id, course_id)
        if (user_id, course_id) in self.enrollments:
            raise ApiError(400, ALREADY_ENROLLED)
        self.enrollments[(user_id, course_id)] = {"role": "learner", "enrolled_at": self.clock()}
        self.counters.enrolled_total += 1
        self._record_locked("course_add_user", user_id, course_id, self.clock())
        return {"user_id": int(user_id), "course_id": int(course_id)}


def _timeline_message(event_type: str, fullname: str, object_name: str) -> str:
    """A readable line like the portal's (wording is the fake's choice)."""
    verbs = {
        "course_add_user": "was added to course",
        "course_remove_user": "was removed from course",
        "course_completion": "completed course",
        "course_failure": "failed course",
        "course_reset_user_progress": "had their progress reset in course",
        "user_login_user": "signed in",
        "unitprogress_test_completion": "completed a test in",
        "certification_issue_certification": "was issued a certification for",
    }
    verb = verbs.get(event_type, event_type)
    return f"{fullname} {verb}" if event_type == "user_login_user" else f"{fullname} {verb} {object_name}"


def _fraction(*parts: str) -> float:
    """A stable number in [0, 1) for these parts (the simulation's dice, the same on every run)."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _parse_talentlms_date(value: str) -> float:
    return datetime.strptime(value, "%d/%m/%Y, %H:%M:%S").replace(tzinfo=UTC).timestamp()
