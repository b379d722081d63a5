"""A controller harness for the enrollment tests: embedded store, in-memory LMS, the real use cases.

Events go through the real bus handlers (intake only); ``drain()`` runs dispatcher rounds until the queue
is empty, as the worker's dispatcher loop would, with a clock that moves forward past every back-off.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saga_support import access_event, delivery, payment_event

from coursebridge.adapters.sqlite_store import SqliteStore
from coursebridge.events.envelope import format_time
from enrollment.adapters.memory_lms import InMemoryLearningPlatform
from enrollment.config import EnrollmentSettings
from enrollment.domain.ids import student_doc_id
from enrollment.domain.lms_record import LmsRecord
from enrollment.domain.mapping import parse_mapping
from enrollment.service_layer.catalogue import Catalogue
from enrollment.service_layer.dispatcher import Dispatcher
from enrollment.service_layer.handlers import payments_dispatcher, subscriptions_dispatcher
from enrollment.service_layer.intake import Intake
from enrollment.service_layer.repository import QUEUE, STUDENTS

EMAIL = "ana.souza@example.com"


class Clock:
    """Wall time for the dispatcher, advanced by hand (so back-offs pass without sleeping)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def text(self) -> str:
        return format_time(datetime.fromtimestamp(self.now, UTC))


class Harness:
    def __init__(
        self,
        path: Path,
        *,
        batch_threshold: int = 0,
        lms: InMemoryLearningPlatform | None = None,
        learning_interval: float = 0,
        learning_quota_share: float = 0.05,
    ) -> None:
        from coursebridge.config import PlatformSettings

        self.path = path
        self.store = SqliteStore("enrollment", path / "enrollment.sqlite3")
        self.clock = Clock()
        self.lms = lms or InMemoryLearningPlatform()
        self.lms.clock = self.clock
        self.settings = EnrollmentSettings(
            platform=PlatformSettings(backend="embedded", data_dir=path, service_name="enrollment"),
            batch_threshold=batch_threshold,
            audit_interval=0,
            learning_interval=learning_interval,
            learning_quota_share=learning_quota_share,
        )
        self.intake = Intake(self.store, clock=self.clock.text)
        self.catalogue = Catalogue(self.store, clock=self.clock.text)
        self.payments = payments_dispatcher(self.intake)
        self.subscriptions = subscriptions_dispatcher(self.intake)
        self.dispatcher: Dispatcher = self.restart()

    def restart(self) -> Dispatcher:
        """A new dispatcher process: nothing in memory survives, only the store."""
        from enrollment.bootstrap import build_dispatcher

        self.dispatcher = build_dispatcher(self.store, self.lms, self.settings)
        self.dispatcher.clock = self.clock
        self.dispatcher.reconciler.clock = self.clock.text
        if self.dispatcher.batcher is not None:
            self.dispatcher.batcher.clock = self.clock.text
            self.dispatcher.batcher.wall = self.clock
            self.dispatcher.batcher.sleep = lambda _s: None
        self.dispatcher.fanout.clock = self.clock.text
        if self.dispatcher.courses is not None:
            self.dispatcher.courses.clock = self.clock
        if self.dispatcher.audit is not None:
            self.dispatcher.audit.clock = self.clock
            self.dispatcher.audit.now = self.clock.text
        if self.dispatcher.learning is not None:
            self.dispatcher.learning.clock = self.clock
        return self.dispatcher

    def map(self, product: str = "4711", body: dict | None = None) -> None:
        self.catalogue.put(parse_mapping(product, body or {"course_ids": ["7", "9"]}))

    def unmap(self, product: str = "4711") -> None:
        self.catalogue.delete(product)

    def pay(self, event: str = "PURCHASE_APPROVED", **options: Any) -> None:
        self.payments(payment_event(event, **options), delivery())

    def access(self, event_type: str, **options: Any) -> None:
        self.subscriptions(access_event(event_type, **options), delivery("enrollment.subscriptions"))

    def drain(self, max_rounds: int = 200) -> int:
        """Dispatcher rounds until nothing is queued; returns the rounds used."""
        for rounds in range(1, max_rounds + 1):
            self.dispatcher.run_round()
            self.clock.now += 30  # past any back-off or rate-limit wait
            if self.store.count(QUEUE) == 0 and self.dispatcher.fanout.pending() == 0:
                return rounds
        raise AssertionError(f"the queue did not drain in {max_rounds} rounds")

    def record(self, email: str = EMAIL) -> LmsRecord:
        doc = self.store.get(STUDENTS, student_doc_id(email)) or {}
        return LmsRecord.from_json(doc.get("lms"))

    def outbox(self, event_type: str | None = None) -> list[dict]:
        entries = [doc.data["event"] for doc in self.store.query("outbox", order_by="sequence")]
        return [e for e in entries if event_type is None or e["type"] == event_type]

    def work_calls(self) -> int:
        """Calls spent on students (not the quota reads or the course-list refresh)."""
        return self.lms.total_calls - self.lms.calls["quota"] - self.lms.calls["list_courses"]

    def enrolled(self, email: str = EMAIL) -> set[str]:
        return self.lms.enrolled(email)

    def close(self) -> None:
        self.store.close()
