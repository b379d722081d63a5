"""Learning activity: poll TalentLMS's timeline within a small share of the quota and publish ``learning``.

TalentLMS sends no webhooks, so every ``ENROLLMENT_LEARNING_INTERVAL_SECONDS`` (default 900; 0 = off) the
dispatcher's housekeeping runs one poll: one ``gettimeline`` per type (``user_login_user``,
``course_completion``). It shares the dispatcher's lease and its one call budget, and comes after the
queue: it runs only when a round left no due work, never while the dispatcher keeps its revocation
reserve, and spends at most ``ENROLLMENT_LEARNING_QUOTA_SHARE`` (default 0.05) of the hourly quota per
quota hour (counted across restarts in ``lms_state/learning``).

Exactly once, as far as a consumer can tell:

- a **watermark** per type (``lms_state/learning-<type>``): the highest ``unix_timestamp`` published and
  the entries seen at that second. Only entries past it are new;
- new entries are published in time order, in chunks; each chunk's outbox entries AND the advanced
  watermark are written in ONE store transaction (the watermark is re-read inside it), so a crash re-reads
  at most the chunk in flight, and a repeat is harmless: ``activity_id`` and the CloudEvent id are
  deterministic (``la-<type>-<user>-<course or 0>-<unix time>``);
- a TalentLMS user CourseBridge has no student for is skipped (counted), and the watermark moves past it.

**The 200 trap**: ``gettimeline`` answers only the LAST 200 events of a type. When an answer is full and
all of it is past the watermark, older new entries may be out of reach: counted as a gap
(``coursebridge_learning_timeline_gaps_total{event_type}``). For completions the poll then re-reads each
mapped course with ``course_id:`` (within the share; each course has its own last 200); for sign-ins,
which have no such filter worth a call per user, the next poll comes sooner (the interval halves down to
``MIN_INTERVAL_SECONDS``) and goes back to the configured one once an answer is no longer full. A gap that
survives this is lost for analytics (documented in docs/enrollment.md).

Attribution (``purchases``): a sign-in goes to every access source of the student activated no later than
the sign-in; a completion to those sources, among them, whose product's current mapping grants the course.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from coursebridge.events import new_event
from coursebridge.events.envelope import format_time, parse_time, utc_now
from coursebridge.events.learning import LEARNING_COURSE_COMPLETED, LEARNING_SIGNED_IN
from coursebridge.outbox import Outbox
from coursebridge.ports import DocumentStore, Filter, Transaction
from coursebridge.topology import LEARNING
from enrollment.domain.access import AccessSource
from enrollment.domain.mapping import ProductMapping
from enrollment.service_layer.ports import (
    TIMELINE_LIMIT,
    LearningPlatform,
    LmsCourseMissing,
    LmsError,
    LmsRateLimited,
    Quota,
    TimelineEntry,
)
from enrollment.service_layer.repository import (
    LMS_STATE,
    PRODUCTS,
    STUDENTS,
    StoreReader,
    StudentUnit,
    load_student,
    mapping_from_doc,
)

log = structlog.get_logger(__name__)

SIGN_INS = "user_login_user"
COMPLETIONS = "course_completion"
EVENT_TYPES = (SIGN_INS, COMPLETIONS)
ACTIVITY = {SIGN_INS: "signed_in", COMPLETIONS: "course_completed"}
CLOUDEVENT_TYPE = {SIGN_INS: LEARNING_SIGNED_IN, COMPLETIONS: LEARNING_COURSE_COMPLETED}
EVENT_SOURCE = "coursebridge/enrollment"
STATE_DOC = "learning"
MIN_INTERVAL_SECONDS = 60.0
SHORT_LIMIT = 200  # TalentLMS's 5-second limit, which GET ratelimit reports when a portal has no quota
SHORT_WINDOW_SECONDS = 5.0
CHUNK = 100  # entries per transaction: 100 outbox entries + their key queues stay under Firestore's 500
MAX_PURCHASES = 200  # the contract's maxItems
KEYS_KEPT = 1000  # keys kept at the watermark's second (more than TalentLMS answers at once)
_ID_NAMESPACE = uuid.UUID("6f1d0a52-6c1b-4f57-9a53-7c6b3c1f0e11")

TIMELINE_CALLS = Counter(
    "coursebridge_learning_timeline_calls_total", "gettimeline calls of the learning poller", ["event_type"]
)
EVENTS_PUBLISHED = Counter(
    "coursebridge_learning_events_published_total", "Learning events written to the outbox", ["activity"]
)
UNKNOWN_USERS = Counter(
    "coursebridge_learning_unknown_users_total",
    "Timeline entries of TalentLMS users CourseBridge has no student for (skipped)",
)
TIMELINE_GAPS = Counter(
    "coursebridge_learning_timeline_gaps_total",
    "Full gettimeline answers entirely past the watermark: older entries may be out of reach",
    ["event_type"],
)
LAST_RUN = Gauge("coursebridge_learning_last_run_timestamp_seconds", "When the last learning poll ended")


def watermark_doc(event_type: str) -> str:
    return f"learning-{event_type}"


@dataclass(frozen=True)
class Watermark:
    """The highest second published, and the entries already published at that second."""

    at: int = 0
    keys: frozenset[str] = frozenset()

    def passed_by(self, entry: TimelineEntry) -> bool:
        return entry.occurred_at > self.at or (entry.occurred_at == self.at and entry.key not in self.keys)

    def advanced(self, entries: Iterable[TimelineEntry]) -> Watermark:
        mark = self
        for entry in entries:
            if entry.occurred_at > mark.at:
                mark = Watermark(entry.occurred_at, frozenset({entry.key}))
            elif entry.occurred_at == mark.at:
                mark = Watermark(mark.at, mark.keys | {entry.key})
        return mark

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "keys": sorted(self.keys)[-KEYS_KEPT:]}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Watermark | None:
        if not data:
            return None
        return cls(int(data.get("at") or 0), frozenset(data.get("keys") or ()))


@dataclass
class LearningRun:
    """What one poll did (also the ``last_run`` of ``GET /admin/learning``)."""

    calls: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    unknown_users: int = 0
    gaps: list[str] = field(default_factory=list)
    courses_reread: list[str] = field(default_factory=list)
    share_spent: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "published": self.published,
            "unknown_users": self.unknown_users,
            "gaps": self.gaps,
            "courses_reread": self.courses_reread,
            "share_spent": self.share_spent,
            "error": self.error,
        }


class ShareSpent(Exception):
    """The learning share of this quota hour is spent: the poll stops here and goes on next time."""


class LearningPoller:
    def __init__(
        self,
        store: DocumentStore,
        lms: LearningPlatform,
        outbox: Outbox,
        *,
        interval: float = 900.0,
        quota_share: float = 0.05,
        hourly_quota: int = 2000,
        quota_window_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval < 0 or not 0 <= quota_share <= 1:
            raise ValueError(
                "ENROLLMENT_LEARNING_INTERVAL_SECONDS must be >= 0 and ENROLLMENT_LEARNING_QUOTA_SHARE "
                "within 0..1"
            )
        self.store = store
        self.lms = lms
        self.outbox = outbox
        self.interval = interval
        self.quota_share = quota_share
        self.hourly_quota = hourly_quota
        self.quota_window_seconds = quota_window_seconds
        self.clock = clock
        self._next_run_at: float | None = None  # read from the store once (a new lease holder goes on)

    # --- when ----------------------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.interval > 0 and self.quota_share > 0

    def due(self) -> bool:
        if not self.enabled:
            return False
        if self._next_run_at is None:
            state = self._state()
            if state.get("next_run_at") is None:
                # A new deployment polls one interval after it starts (as the drift audit), not at once;
                # stored, so restarts in between do not push the first poll back.
                state["next_run_at"] = self.clock() + self.interval
                self.store.set(LMS_STATE, STATE_DOC, state)
            self._next_run_at = float(state["next_run_at"])
        return self.clock() >= self._next_run_at

    # --- one poll ------------------------------------------------------------------------------------------

    def step(self, quota: Quota | None = None) -> LearningRun:
        """One poll of both types (the dispatcher's housekeeping calls it when ``due()``)."""
        state = self._state()
        run = LearningRun()
        interval = float(state.get("interval_seconds") or self.interval)
        sign_in_gap = False
        try:
            for event_type in EVENT_TYPES:
                gap = self._poll(event_type, quota, state, run)
                sign_in_gap = sign_in_gap or (gap and event_type == SIGN_INS)
        except ShareSpent:
            run.share_spent = True
        except LmsError as error:
            run.error = type(error).__name__
            raise  # the dispatcher's housekeeping pauses on a rejected key and logs the rest
        finally:
            if sign_in_gap:
                floor = min(MIN_INTERVAL_SECONDS, self.interval)
                interval = max(floor, min(interval, self.interval) / 2)
            elif run.calls.get(SIGN_INS):
                interval = self.interval  # an answer that was not full: back to the configured pace
            now = self.clock()
            next_run_at = now + interval
            if run.share_spent:  # nothing to do before the share refills with the quota's next hour
                next_run_at = max(next_run_at, float((state.get("hour") or {}).get("ends_at") or 0.0))
            state.update(
                interval_seconds=interval,
                next_run_at=next_run_at,
                last_run={**run.to_json(), "finished_at": format_time(utc_now())},
            )
            self.store.set(LMS_STATE, STATE_DOC, state)
            self._next_run_at = next_run_at
            LAST_RUN.set(now)
            log.info(
                "learning.polled",
                calls=sum(run.calls.values()),
                published=sum(run.published.values()),
                unknown_users=run.unknown_users,
                gaps=run.gaps,
                share_spent=run.share_spent,
                next_in_seconds=round(next_run_at - now),
            )
        return run

    def _poll(self, event_type: str, quota: Quota | None, state: dict[str, Any], run: LearningRun) -> bool:
        """Read one type, re-read per course after a gap (completions), publish what is new. True: gap."""
        run.published.setdefault(ACTIVITY[event_type], 0)
        mark = Watermark.from_json(self.store.get(LMS_STATE, watermark_doc(event_type)))
        answer = self._read(event_type, quota, state, run)
        gap = mark is not None and len(answer) >= TIMELINE_LIMIT and all(mark.passed_by(e) for e in answer)
        entries = {e.key: e for e in answer}
        if gap:
            TIMELINE_GAPS.labels(event_type).inc()
            run.gaps.append(event_type)
            log.warning("learning.timeline_gap", event_type=event_type, answered=len(answer))
        try:
            if gap and event_type == COMPLETIONS:
                for course in self._mapped_courses():
                    try:
                        reread = self._read(event_type, quota, state, run, course_id=course)
                    except LmsCourseMissing:
                        continue  # deleted on TalentLMS: nothing to re-read there
                    for entry in reread:
                        entries.setdefault(entry.key, entry)
                    run.courses_reread.append(course)
                    full = len(reread) >= TIMELINE_LIMIT
                    if full and mark is not None and all(mark.passed_by(e) for e in reread):
                        # More than 200 completions of this one course since the last poll: some are lost.
                        TIMELINE_GAPS.labels(event_type).inc()
                        run.gaps.append(f"{event_type}:course_id={course}")
        finally:
            # Whatever was read is published, even when the share ran out during the re-reads.
            fresh = sorted(
                (e for e in entries.values() if mark is None or mark.passed_by(e)),
                key=lambda e: (e.occurred_at, e.key),
            )
            for start in range(0, len(fresh), CHUNK):
                self._publish(event_type, fresh[start : start + CHUNK], run)
        return gap

    def _read(
        self,
        event_type: str,
        quota: Quota | None,
        state: dict[str, Any],
        run: LearningRun,
        *,
        course_id: str | None = None,
    ) -> list[TimelineEntry]:
        self._spend(quota, state)
        try:
            entries = self.lms.timeline(event_type, course_id=course_id)
        except LmsRateLimited:
            self._give_back(state)  # refused before anything was sent (or by a 429): not a learning read
            raise
        except LmsError:
            self._count(event_type, run)  # sent, whatever came back
            raise
        self._count(event_type, run)
        return entries

    @staticmethod
    def _count(event_type: str, run: LearningRun) -> None:
        run.calls[event_type] = run.calls.get(event_type, 0) + 1
        TIMELINE_CALLS.labels(event_type).inc()

    # --- the quota share -----------------------------------------------------------------------------------

    def hourly(self, quota: Quota | None) -> Quota | None:
        """``quota`` when it describes the hour: a portal without an hourly quota (the local fake) reports
        its 5-second window in ``GET ratelimit``, which must not size the learning share."""
        if quota is None or quota.limit <= 0:
            return None
        if quota.limit > SHORT_LIMIT or quota.reset_at - self.clock() > SHORT_WINDOW_SECONDS + 1:
            return quota
        return None

    def allowed_per_hour(self, quota: Quota | None) -> int:
        hourly = self.hourly(quota)
        return int((hourly.limit if hourly is not None else self.hourly_quota) * self.quota_share)

    def _spend(self, quota: Quota | None, state: dict[str, Any]) -> None:
        """Take one call from this quota hour's learning share (stored: a restart does not refill it)."""
        now = self.clock()
        hour = dict(state.get("hour") or {})
        if now >= float(hour.get("ends_at") or 0.0):
            hourly = self.hourly(quota)
            ends_at = hourly.reset_at if hourly is not None and hourly.reset_at > now else None
            hour = {"ends_at": ends_at or now + self.quota_window_seconds, "calls": 0}
        if int(hour["calls"]) >= self.allowed_per_hour(quota):
            state["hour"] = hour
            raise ShareSpent
        hour["calls"] = int(hour["calls"]) + 1
        state["hour"] = hour
        self.store.set(LMS_STATE, STATE_DOC, state)  # durable before the call is sent

    def _give_back(self, state: dict[str, Any]) -> None:
        hour = state.get("hour") or {}
        hour["calls"] = max(0, int(hour.get("calls") or 0) - 1)
        self.store.set(LMS_STATE, STATE_DOC, state)

    # --- publishing ----------------------------------------------------------------------------------------

    def _publish(self, event_type: str, chunk: list[TimelineEntry], run: LearningRun) -> None:
        """Outbox entries for the chunk and the advanced watermark, in one transaction."""
        observed_at = format_time(utc_now())
        events = []
        students: dict[str, StudentUnit | None] = {}  # by TalentLMS user id, read once per chunk
        for entry in chunk:
            if entry.user_id not in students:
                students[entry.user_id] = self._student_of(entry.user_id)
            unit = students[entry.user_id]
            if unit is None:
                run.unknown_users += 1
                UNKNOWN_USERS.inc()
                continue
            events.append((entry, self._event(entry, unit, observed_at)))

        def work(tx: Transaction) -> int:
            mark = Watermark.from_json(tx.get(LMS_STATE, watermark_doc(event_type)))
            written = 0
            for entry, event in events:
                if mark is None or mark.passed_by(entry):
                    self.outbox.add(tx, LEARNING, event, entry.user_id)
                    written += 1
            advanced = (mark or Watermark()).advanced(chunk)
            tx.set(LMS_STATE, watermark_doc(event_type), {**advanced.to_json(), "updated_at": observed_at})
            return written

        written = self.store.transaction(work)
        activity = ACTIVITY[event_type]
        run.published[activity] = run.published.get(activity, 0) + written
        EVENTS_PUBLISHED.labels(activity).inc(written)

    def _student_of(self, lms_user_id: str) -> StudentUnit | None:
        """The student TalentLMS's user is (``students.lms.user_id``), with sources and mappings."""
        found = self.store.query(STUDENTS, [Filter("lms.user_id", "==", lms_user_id)], limit=1)
        return load_student(StoreReader(self.store), found[0].id) if found else None

    def _event(self, entry: TimelineEntry, unit: StudentUnit, observed_at: str) -> Any:
        purchases = [
            {"access_id": s.access_id, "transaction": s.transaction, "product_id": s.product_id}
            for s in attributed(entry, unit.sources, unit.mappings)
        ][:MAX_PURCHASES]
        data = {
            "activity_id": entry.key,
            "activity": ACTIVITY[entry.event_type],
            "lms_user_id": entry.user_id,
            "course_id": entry.course_id if entry.event_type == COMPLETIONS else None,
            "occurred_at": format_time(datetime.fromtimestamp(entry.occurred_at, UTC)),
            "observed_at": observed_at,
            "purchases": purchases,
        }
        transaction = next((p["transaction"] for p in purchases if p["transaction"]), None)
        return new_event(
            CLOUDEVENT_TYPE[entry.event_type],
            data,
            source=EVENT_SOURCE,
            correlation_id=transaction or entry.key,
            subject=entry.key,
            event_id=str(uuid.uuid5(_ID_NAMESPACE, entry.key)),
        )

    # --- reading the state ---------------------------------------------------------------------------------

    def _mapped_courses(self) -> list[str]:
        courses: set[str] = set()
        for doc in self.store.scan(PRODUCTS, [Filter("removed", "==", False)]):
            mapping = mapping_from_doc(doc.data)
            if mapping is not None:
                courses |= set(mapping.course_ids) | {c for cs in mapping.plans.values() for c in cs}
        return sorted(courses, key=lambda c: (len(c), c))

    def _state(self) -> dict[str, Any]:
        return dict(self.store.get(LMS_STATE, STATE_DOC) or {})


def attributed(
    entry: TimelineEntry, sources: Iterable[AccessSource], mappings: dict[str, ProductMapping | None]
) -> list[AccessSource]:
    """The access sources an activity is attributed to (pure): those activated no later than it; for a
    completion, only those whose product's mapping grants the course."""
    at = datetime.fromtimestamp(entry.occurred_at, UTC)
    chosen = []
    for source in sorted(sources, key=lambda s: s.access_id):
        if source.activated_at is None or parse_time(source.activated_at).replace(microsecond=0) > at:
            continue
        if entry.event_type == COMPLETIONS:
            mapping = mappings.get(source.product_id or "")
            if mapping is None or entry.course_id not in mapping.courses_for(source.plan_id):
                continue
        chosen.append(source)
    return chosen


def learning_status(store: DocumentStore) -> dict[str, Any]:
    """The poller's state for ``GET /admin/learning`` (ids and counts only: no personal data)."""
    state = dict(store.get(LMS_STATE, STATE_DOC) or {})
    marks = {}
    for event_type in EVENT_TYPES:
        mark = store.get(LMS_STATE, watermark_doc(event_type))
        marks[event_type] = (
            {
                "at": format_time(datetime.fromtimestamp(int(mark["at"]), UTC)),
                "entries_at_that_second": len(mark.get("keys") or ()),
                "updated_at": mark.get("updated_at"),
            }
            if mark
            else None
        )
    return {**state, "watermarks": marks}
