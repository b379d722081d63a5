"""The dispatcher: drains the LMS queue at the pace TalentLMS allows. One active per deployment (a lease).

Every round:

1. a rejected API key pauses everything; a probe (``GET ratelimit``, not counted) resumes it by itself;
2. a rate limit (429, or the hourly quota spent) waits for TalentLMS's own reset — nothing is failed, no
   bus delivery attempt is burnt, because the work is in the queue and not in a message;
3. mapping changes are spread to the students they affect (``fanout``);
4. in-doubt students are read back in bulk when many are (after a crash mid-batch);
5. revocations first (oldest first): a refund is never stuck behind a launch; then grants, oldest first —
   in batches of up to 100 while there is a backlog, one call at a time when it is quiet (latency);
6. queue depth, oldest age, ETA and the quota are published as metrics and in ``lms_state/dispatcher``
   (what ``GET /admin/lms/queue`` shows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from coursebridge.events.envelope import format_time, parse_time, utc_now
from coursebridge.ports import DocumentStore, Filter
from enrollment.domain.pace import eta_seconds
from enrollment.service_layer.audit import DriftAudit
from enrollment.service_layer.batch import BatchEnroller
from enrollment.service_layer.courses import CourseListCache
from enrollment.service_layer.fanout import Fanout
from enrollment.service_layer.learning import LearningPoller
from enrollment.service_layer.ports import LearningPlatform, LmsAuthRejected, LmsError, Quota
from enrollment.service_layer.reconcile import Reconciler, Turn
from enrollment.service_layer.repository import GRANT_LANE, LMS_STATE, PARKED, QUEUE, REVOKE_LANE

log = structlog.get_logger(__name__)

QUEUE_DEPTH = Gauge("coursebridge_lms_queue_depth", "Students waiting for TalentLMS work", ["lane"])
QUEUE_OLDEST = Gauge(
    "coursebridge_lms_queue_oldest_age_seconds", "How long the longest-waiting student has waited", ["lane"]
)
QUEUE_ETA = Gauge("coursebridge_lms_queue_eta_seconds", "Estimated seconds until the whole queue is served")
DISPATCHER_PAUSED = Gauge(
    "coursebridge_lms_dispatcher_paused", "1 while TalentLMS rejects the API key and LMS work is paused"
)
RATE_LIMITED_SECONDS = Gauge(
    "coursebridge_lms_rate_limited_seconds",
    "Seconds the dispatcher still waits for TalentLMS's limit to reset",
)
PARKED_OLDEST = Gauge(
    "coursebridge_parked_oldest_age_seconds", "Age of the oldest paid purchase waiting for a product mapping"
)
PARKED_COUNT = Gauge("coursebridge_parked_purchases", "Paid purchases waiting for a product mapping")
STUDENTS_SERVED = Counter(
    "coursebridge_lms_students_served_total", "Students brought to desired state", ["path"]
)
ENROLLMENT_FAILURES = Counter(
    "coursebridge_enrollment_failed_total",
    "Courses TalentLMS refused (a person or a mapping change must act)",
)

STATE_DOC = "dispatcher"
PUBLISH_SECONDS = 2.0


@dataclass
class DispatcherSettings:
    calls_per_window: int = 190
    window_seconds: float = 5.0
    quota_window_seconds: float = 3600.0
    batch_threshold: int = 50  # grant backlog from which batches are used
    batch_students: int = 500  # at most this many students per batch round
    students_per_round: int = 100
    round_seconds: float = 5.0
    probe_seconds: float = 5.0
    quota_refresh_seconds: float = 30.0
    revocation_reserve: float = 0.05  # share of the hourly quota kept for revocations
    idle_seconds: float = 0.5


@dataclass
class Pace:
    """Observed calls per student (moving), for the ETA."""

    calls: float = 2.0
    students: float = 1.0

    def record(self, calls: int, students: int) -> None:
        if students <= 0:
            return
        self.calls = 0.8 * self.calls + 0.2 * calls
        self.students = 0.8 * self.students + 0.2 * students

    @property
    def calls_per_student(self) -> float:
        return self.calls / max(self.students, 1e-9)


@dataclass
class RoundReport:
    served: int = 0
    calls: int = 0
    batched: int = 0
    paused: bool = False
    rate_limited_for: float | None = None
    more: bool = False
    errors: list[str] = field(default_factory=list)


class Dispatcher:
    def __init__(
        self,
        store: DocumentStore,
        lms: LearningPlatform,
        reconciler: Reconciler,
        *,
        settings: DispatcherSettings | None = None,
        batcher: BatchEnroller | None = None,
        fanout: Fanout | None = None,
        courses: CourseListCache | None = None,
        audit: DriftAudit | None = None,
        learning: LearningPoller | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.lms = lms
        self.reconciler = reconciler
        self.settings = settings or DispatcherSettings()
        self.batcher = batcher
        self.fanout = fanout or Fanout(store)
        self.courses = courses
        self.audit = audit
        self.learning = learning
        self.clock = clock
        self._published_at = -1e18
        self.paused: LmsAuthRejected | None = None
        self.paused_since: float | None = None
        self.rate_limited_until = 0.0
        self.quota: Quota | None = None
        self._quota_read_at = -1e18
        self.pace = Pace()

    # --- the round -----------------------------------------------------------------------------------------

    def run_round(self) -> float:
        """One bounded round; returns how long to wait before the next."""
        report = self._round()
        if not report.paused and not report.rate_limited_for and not report.more:
            self._housekeeping()
        if report.served or report.batched or self.clock() - self._published_at >= PUBLISH_SECONDS:
            self._publish(report)
        if report.paused:
            return self.settings.probe_seconds
        if report.rate_limited_for:
            return min(report.rate_limited_for, self.settings.probe_seconds)
        return 0.0 if report.more else self.settings.idle_seconds

    def _round(self) -> RoundReport:
        report = RoundReport()
        started = self.clock()
        if self.paused is not None and not self._probe():
            report.paused = True
            return report
        wait = self.rate_limited_until - self.clock()
        if wait > 0:
            report.rate_limited_for = wait
            return report
        self.fanout.step()
        self._refresh_quota()
        revocations_only = self._quota_reserved_for_revocations()
        for lane in (REVOKE_LANE, GRANT_LANE):
            if lane == GRANT_LANE and revocations_only:
                break
            items = self._due(lane, self.settings.students_per_round)
            if not items:
                continue
            if (
                lane == GRANT_LANE
                and self.batcher is not None
                and self._backlog(lane) >= self.settings.batch_threshold
            ):
                outcome = self.batcher.run(
                    [item["student_id"] for item in self._due(lane, self.settings.batch_students)]
                )
                report.calls += outcome.calls
                report.batched += outcome.students
                self.pace.record(outcome.calls, outcome.students)
                if outcome.rate_limited_for:
                    self._rate_limited(outcome.rate_limited_for, report)
                    return report
                if outcome.auth_rejected is not None:
                    self._pause(outcome.auth_rejected, report)
                    return report
                items = self._due(lane, self.settings.students_per_round)
            for item in items:
                if self.clock() - started > self.settings.round_seconds:
                    report.more = True
                    return report
                turn = self._turn(item, report)
                if turn is None:
                    continue
                if turn.auth_rejected is not None:
                    self._pause(turn.auth_rejected, report)
                    return report
                if turn.rate_limited_for is not None:
                    self._rate_limited(turn.rate_limited_for, report)
                    return report
            if len(items) >= self.settings.students_per_round:
                report.more = True
        return report

    def _turn(self, item: dict[str, Any], report: RoundReport) -> Turn | None:
        student_id = item["student_id"]
        try:
            turn = self.reconciler.turn(student_id, int(item.get("seq") or 0))
        except (LmsError, LookupError) as error:
            report.errors.append(type(error).__name__)
            self._requeue(student_id, 10.0, type(error).__name__)
            return None
        report.calls += turn.calls
        if turn.failed:
            ENROLLMENT_FAILURES.inc(len(turn.failed))
        if turn.converged:
            report.served += 1
            STUDENTS_SERVED.labels("single").inc()
            self.pace.record(turn.calls, 1)
        elif turn.retry_in is not None:
            self._requeue(student_id, turn.retry_in, "in doubt or unavailable")
        return turn

    def _housekeeping(self) -> None:
        """When the queue leaves time: the course list cache, a slice of the drift audit, a learning poll.

        The learning poll never runs while students are due (the queue comes first) nor while the quota is
        down to the revocation reserve; it spends only its own share of the quota (``learning``).
        """
        try:
            if self.courses is not None:
                self.courses.refresh_if_due()
            if self.audit is not None and not self._quota_reserved_for_revocations() and self.audit.due():
                self.audit.step(self.quota, seconds=min(1.0, self.settings.round_seconds))
            if (
                self.learning is not None
                and not self._quota_reserved_for_revocations()
                and self.learning.due()
                and not any(self._due(lane, 1) for lane in (REVOKE_LANE, GRANT_LANE))
            ):
                self.learning.step(self.quota)
        except LmsAuthRejected as rejected:
            self._pause(rejected, RoundReport())
        except LmsError as error:
            log.warning("dispatcher.housekeeping_failed", error=type(error).__name__)

    # --- limits --------------------------------------------------------------------------------------------

    def _probe(self) -> bool:
        try:
            self.quota = self.lms.quota()
        except LmsAuthRejected:
            return False
        except LmsError:
            return False
        log.warning(
            "dispatcher.resumed",
            paused_seconds=round(self.clock() - (self.paused_since or self.clock()), 1),
        )
        self.paused = None
        self.paused_since = None
        return True

    def _pause(self, rejected: LmsAuthRejected, report: RoundReport) -> None:
        if self.paused is None:
            log.error("dispatcher.paused", reason=rejected.reason, status=rejected.status)
            self.paused_since = self.clock()
        self.paused = rejected
        report.paused = True

    def _rate_limited(self, seconds: float, report: RoundReport) -> None:
        self.rate_limited_until = max(self.rate_limited_until, self.clock() + seconds)
        report.rate_limited_for = seconds
        log.info("dispatcher.rate_limited", wait_seconds=round(seconds, 1))

    def _refresh_quota(self) -> None:
        if self.clock() - self._quota_read_at < self.settings.quota_refresh_seconds:
            return
        self._quota_read_at = self.clock()
        try:
            self.quota = self.lms.quota()
        except LmsError as error:
            log.warning("dispatcher.quota_unread", error=type(error).__name__)

    def _quota_reserved_for_revocations(self) -> bool:
        quota = self.quota
        if quota is None or quota.reset_at <= self.clock():
            return False
        return quota.remaining <= quota.limit * self.settings.revocation_reserve

    # --- the queue -----------------------------------------------------------------------------------------

    def _due(self, lane: str, limit: int) -> list[dict[str, Any]]:
        """Due items of a lane, longest waiting first; items backing off are skipped, never block others."""
        now = format_time(datetime.fromtimestamp(self.clock(), UTC))
        due: list[dict[str, Any]] = []
        for doc in self.store.scan(QUEUE, [Filter("lane", "==", lane)], order_by="since", page_size=limit):
            if (doc.data.get("due_at") or "") <= now:
                due.append(doc.data)
                if len(due) >= limit:
                    break
        return due

    def _backlog(self, lane: str) -> int:
        return self.store.count(QUEUE, [Filter("lane", "==", lane)])

    def _requeue(self, student_id: str, delay: float, why: str) -> None:
        due = format_time(datetime.fromtimestamp(self.clock(), UTC) + timedelta(seconds=delay))

        def work(tx: Any) -> None:
            item = tx.get(QUEUE, student_id)
            if item is None:
                return
            tx.set(
                QUEUE,
                student_id,
                {**item, "due_at": due, "attempts": int(item.get("attempts") or 0) + 1, "last_error": why},
            )

        self.store.transaction(work)

    # --- reporting -----------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Depth, oldest age and ETA per lane, quota and pause: for metrics and the admin API."""
        now = self.clock()
        lanes: dict[str, Any] = {}
        total = 0
        for lane in (REVOKE_LANE, GRANT_LANE):
            depth = self._backlog(lane)
            total += depth
            oldest = self.store.query(QUEUE, [Filter("lane", "==", lane)], order_by="since", limit=1)
            age = max(0.0, now - parse_time(oldest[0].data["since"]).timestamp()) if oldest else 0.0
            lanes[lane] = {"depth": depth, "oldest_age_seconds": round(age, 1)}
        quota = self.quota
        oldest_parked = self.store.query(PARKED, order_by="parked_at", limit=1)
        parked_age = (
            max(0.0, now - parse_time(oldest_parked[0].data["parked_at"]).timestamp())
            if oldest_parked
            else 0.0
        )
        return {
            "lanes": lanes,
            "parked": {"count": self.store.count(PARKED), "oldest_age_seconds": round(parked_age, 1)},
            "depth": total,
            "eta_seconds": round(self.eta(total), 1),
            "calls_per_student": round(self.pace.calls_per_student, 3),
            "paused": self.paused is not None,
            "paused_reason": self.paused.reason if self.paused is not None else None,
            "paused_since": self.paused_since,
            "rate_limited_until": self.rate_limited_until if self.rate_limited_until > now else None,
            "quota": (
                {"limit": quota.limit, "remaining": quota.remaining, "reset_at": quota.reset_at}
                if quota is not None
                else None
            ),
            "calls_per_second": self.settings.calls_per_window / self.settings.window_seconds,
            "quota_window_seconds": self.settings.quota_window_seconds,
            "updated_at": format_time(utc_now()),
        }

    def eta(self, position: int) -> float:
        return eta_from_state(
            position,
            calls_per_student=self.pace.calls_per_student,
            calls_per_second=self.settings.calls_per_window / self.settings.window_seconds,
            quota=self.quota,
            quota_window=self.settings.quota_window_seconds,
            now=self.clock(),
        )

    def _publish(self, report: RoundReport) -> None:
        DISPATCHER_PAUSED.set(1 if self.paused is not None else 0)
        RATE_LIMITED_SECONDS.set(max(0.0, self.rate_limited_until - self.clock()))
        try:
            status = self.status()
        except Exception as error:  # reporting must never stop the work
            log.warning("dispatcher.status_failed", error=type(error).__name__)
            return
        for lane, figures in status["lanes"].items():
            QUEUE_DEPTH.labels(lane).set(figures["depth"])
            QUEUE_OLDEST.labels(lane).set(figures["oldest_age_seconds"])
        QUEUE_ETA.set(status["eta_seconds"])
        PARKED_COUNT.set(status["parked"]["count"])
        PARKED_OLDEST.set(status["parked"]["oldest_age_seconds"])
        status["last_round"] = {"served": report.served, "calls": report.calls, "batched": report.batched}
        self.store.set(LMS_STATE, STATE_DOC, status)
        self._published_at = self.clock()


def eta_from_state(
    position: int,
    *,
    calls_per_student: float,
    calls_per_second: float,
    quota: Quota | None,
    quota_window: float,
    now: float,
) -> float:
    if quota is None:
        remaining, limit, reset_in = 10**9, 10**9, 0.0
    else:
        remaining, limit, reset_in = quota.remaining, quota.limit, max(0.0, quota.reset_at - now)
    return eta_seconds(
        position,
        calls_per_student=calls_per_student,
        calls_per_second=calls_per_second,
        quota_remaining=remaining,
        quota_limit=limit,
        quota_reset_in=reset_in,
        quota_window=quota_window,
    )
