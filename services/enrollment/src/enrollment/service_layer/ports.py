"""What the enrollment saga needs from a learning platform, independent of TalentLMS's wire format.

The TalentLMS adapter (``enrollment.adapters.talentlms``) implements it against the real API or the
local fake; tests may use either. Errors are classified so the saga knows what to do:
``LmsTransientError`` → redeliver later (rate limit, 5xx, timeout); ``LmsPermanentError`` → publish
``enrollment.failed`` with the reason and stop retrying. "Already enrolled" on enroll and "not enrolled"
on unenroll are NOT errors: the adapter reports them as success, which is what makes retries safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class LmsError(Exception):
    """Base of the learning platform's errors."""


class LmsTransientError(LmsError):
    """Worth retrying later: rate limited, server error, timeout, connection refused."""


class LmsPermanentError(LmsError):
    """No retry will help (unknown course, invalid arguments, wrong API key...): a person must look."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LmsUser:
    id: str
    email: str
    login: str
    active: bool = True


@dataclass(frozen=True)
class LmsCourse:
    id: str
    name: str


class LearningPlatform(Protocol):
    def find_user_by_email(self, email: str) -> LmsUser | None: ...

    def sign_up(self, *, email: str, first_name: str, last_name: str, login: str, password: str) -> LmsUser:
        """Create the user; if one with that email already exists, return it instead."""

    def enroll(self, user_id: str, course_id: str) -> bool:
        """Enroll as learner. True when this call enrolled, False when already enrolled (both success)."""

    def unenroll(self, user_id: str, course_id: str) -> bool:
        """Remove from the course. True when removed now, False when was not enrolled (both success)."""

    def set_user_active(self, user_id: str, active: bool) -> None: ...

    def list_courses(self) -> list[LmsCourse]: ...
