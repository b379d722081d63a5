"""TalentLMS's course list, cached in enrollment's store for the mapping API's checks and course picker.

The dispatcher refreshes it every ``interval`` seconds and whenever the API asks (a mapping named a course
the cache does not know: maybe created in TalentLMS a minute ago). The API itself never calls TalentLMS.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from coursebridge.events.envelope import format_time, utc_now
from coursebridge.ports import DocumentStore
from enrollment.service_layer.ports import LearningPlatform, LmsError
from enrollment.service_layer.repository import LMS_STATE

log = structlog.get_logger(__name__)

COURSES_DOC = "courses"


class CourseListCache:
    def __init__(
        self,
        store: DocumentStore,
        lms: LearningPlatform,
        *,
        interval: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.lms = lms
        self.interval = interval
        self.clock = clock
        self._read_at = -1e18

    def refresh_if_due(self) -> bool:
        doc = self.store.get(LMS_STATE, COURSES_DOC)
        requested = bool(doc and doc.get("refresh_requested"))
        if doc is not None and not requested and self.clock() - self._read_at < self.interval:
            return False
        self._read_at = self.clock()
        try:
            courses = self.lms.list_courses()
        except LmsError as error:
            log.warning("courses.unread", error=type(error).__name__)
            return False
        self.store.set(
            LMS_STATE,
            COURSES_DOC,
            {
                "courses": [{"id": c.id, "name": c.name} for c in courses],
                "fetched_at": format_time(utc_now()),
                "refresh_requested": False,
            },
        )
        log.info("courses.refreshed", courses=len(courses))
        return True
