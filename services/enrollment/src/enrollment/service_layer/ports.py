"""What enrollment needs from a learning platform, independent of TalentLMS's wire format.

The TalentLMS adapters (``enrollment.adapters``: v1 and v2 clients behind one facade, sharing one call
budget) implement it against the real API or the local fake. Errors are classified by *meaning*, because
the dispatcher acts on the meaning:

- ``LmsRateLimited``  → wait ``retry_after``; never a failure, never burns anything;
- ``LmsAuthRejected`` → pause all LMS work, alert, probe until the key works again;
- ``LmsInDoubt``      → the request may or may not have taken effect (timeout, 5xx, reset after send):
  read TalentLMS back before deciding anything else for that student;
- ``LmsUnavailable``  → nothing was sent or nothing happened (connection refused): retry later;
- ``LmsUserMissing``  → the remembered user id is gone: re-resolve the user (by e-mail, else sign up);
- ``LmsCourseMissing``→ the course does not exist: wait for a mapping change;
- ``LmsPermanentError`` → anything else TalentLMS refuses: recorded for a person to look at.

"Already enrolled" on enroll and "not enrolled" on unenroll are NOT errors: the adapter reports them as
success (``False``), which is what makes retries safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


class LmsError(Exception):
    """Base of the learning platform's errors."""


class LmsTransientError(LmsError):
    """Worth retrying later."""


class LmsUnavailable(LmsTransientError):
    """Nothing happened on TalentLMS's side (not reached, or refused before acting)."""


class LmsInDoubt(LmsTransientError):
    """The request may have been acted upon: the outcome is unknown until read back."""


class LmsRateLimited(LmsTransientError):
    """Over the 5-second limit or the hourly quota; ``retry_after`` seconds until calls may resume."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class LmsAuthRejected(LmsError):
    """401/403: the API key was rejected (rotated, API disabled, portal inactive)."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class LmsPermanentError(LmsError):
    """No retry will help without a change somewhere: a person (or a mapping change) must act."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LmsUserMissing(LmsPermanentError):
    """ "The requested user does not exist": deleted in TalentLMS (or an id from another portal)."""


class LmsCourseMissing(LmsPermanentError):
    """ "The requested course does not exist"."""


@dataclass(frozen=True)
class LmsUser:
    """``courses``: the user's course ids when the answer carried them (a sign-up that created the user:
    none; v1 ``users/email:`` lists them), ``None`` when unknown and a read-back is needed."""

    id: str
    email: str
    login: str
    active: bool = True
    courses: frozenset[str] | None = None


@dataclass(frozen=True)
class LmsCourse:
    id: str
    name: str


@dataclass(frozen=True)
class NewUser:
    """A user to create (batch upsert or sign-up)."""

    email: str
    first_name: str
    last_name: str
    login: str
    password: str


@dataclass(frozen=True)
class Quota:
    """What TalentLMS reports about the hourly quota (``GET ratelimit`` or the rate-limit headers)."""

    limit: int
    remaining: int
    reset_at: float  # epoch seconds when ``remaining`` goes back to ``limit``


@dataclass(frozen=True)
class TimelineEntry:
    """One event of TalentLMS's timeline (``gettimeline``), reduced to what CourseBridge keeps.

    TalentLMS's answer also names the user (login, e-mail, full name): personal data, never kept here.
    ``course_id`` is the event's object when it is a course event (``course_completion``, ...), else None.
    """

    event_type: str
    user_id: str
    occurred_at: int  # epoch seconds (``unix_timestamp``)
    course_id: str | None = None

    @property
    def key(self) -> str:
        """Deterministic identity: the same timeline entry always gives the same key (``activity_id``)."""
        return f"la-{self.event_type}-{self.user_id}-{self.course_id or 0}-{self.occurred_at}"


TIMELINE_LIMIT = 200  # gettimeline answers the LAST 200 events of a type; older ones are out of its reach

TaskState = Literal["pending", "running", "completed", "failed"]


@dataclass(frozen=True)
class TaskItemResult:
    """One item of a batch as the task reports it; ``ok`` None when the task says nothing per item."""

    index: int
    ok: bool | None
    message: str | None = None


@dataclass(frozen=True)
class TaskStatus:
    state: TaskState
    items: tuple[TaskItemResult, ...] = field(default_factory=tuple)


class LearningPlatform(Protocol):
    # --- users ---------------------------------------------------------------------------------------------
    def find_user_by_email(self, email: str) -> LmsUser | None: ...

    def sign_up(self, new_user: NewUser) -> LmsUser:
        """Create the user; if one with that email already exists, return it instead."""

    def user_courses(self, user_id: str) -> set[str]:
        """Course ids the user is enrolled in now (read back). ``LmsUserMissing`` if the user is gone."""

    # --- enrollments ---------------------------------------------------------------------------------------
    def enroll(self, user_id: str, course_id: str) -> bool:
        """Enroll as learner. True when this call enrolled, False when already enrolled (both success)."""

    def unenroll(self, user_id: str, course_id: str) -> bool:
        """Remove from the course. True when removed now, False when was not enrolled (both success)."""

    # --- courses -------------------------------------------------------------------------------------------
    def list_courses(self) -> list[LmsCourse]: ...

    def course_users(self, course_id: str) -> set[str]:
        """User ids enrolled in the course now (one call: the audit's and batch verification's read)."""

    # --- batch (API v2) ------------------------------------------------------------------------------------
    def batch_upsert_users(self, users: Sequence[NewUser]) -> str:
        """Start a background task creating up to 100 users; returns the task id."""

    def batch_enroll(self, pairs: Sequence[tuple[str, str]]) -> str:
        """Start a background task enrolling up to 100 (user id, course id) pairs; returns the task id."""

    def task_status(self, task_id: str) -> TaskStatus: ...

    def users_updated_since(self, since_epoch: float) -> list[LmsUser]:
        """Every user created or updated since then, all pages (finds ids of batch-created users)."""

    # --- learning activity ---------------------------------------------------------------------------------
    def timeline(
        self, event_type: str, *, user_id: str | None = None, course_id: str | None = None
    ) -> list[TimelineEntry]:
        """The last ``TIMELINE_LIMIT`` events of ``event_type`` (optionally of one user or course), oldest
        first whatever order TalentLMS answered in. One counted call."""

    # --- budget and links ----------------------------------------------------------------------------------
    def quota(self) -> Quota:
        """The hourly quota as TalentLMS reports it now (``GET ratelimit``: not counted against it)."""

    def course_link(self, user_id: str, course_id: str) -> str:
        """A one-click sign-in link that opens the course (``gotocourse``); short-lived, never stored."""
