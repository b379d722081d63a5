"""Product mappings (the admin API's use cases): checked, previewed, audited, announced and spread.

The mapping document, its audit record, the catalogue event and the fan-out job (which re-evaluates every
affected student) are written in one transaction, so the API never waits on the bus or on TalentLMS, and a
change is never kept without its announcement (or the reverse). A deleted mapping stays as a tombstone so
revisions keep increasing across delete and re-create.

Course ids are checked against TalentLMS's course list as the worker last read it (``lms_state/courses``);
a dry run answers how many students would gain or lose which courses before anything is applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from coursebridge.events import new_event
from coursebridge.events.catalogue import PRODUCT_MAPPED, PRODUCT_UNMAPPED
from coursebridge.events.envelope import format_time, utc_now
from coursebridge.outbox import Outbox
from coursebridge.ports import DocumentStore, Filter, Transaction
from coursebridge.topology import CATALOGUE
from enrollment.domain.desired import impact
from enrollment.domain.mapping import ProductMapping
from enrollment.service_layer import fanout
from enrollment.service_layer.courses import COURSES_DOC
from enrollment.service_layer.reconcile import EVENT_SOURCE
from enrollment.service_layer.repository import (
    ACCESSES,
    LMS_STATE,
    PARKED,
    PRODUCTS,
    StoreReader,
    load_student,
    mapping_from_doc,
)

AUDIT = "audit"


class UnknownCourses(ValueError):
    """Course ids that TalentLMS does not have (as of the cached course list)."""

    def __init__(self, course_ids: list[str], as_of: str | None) -> None:
        super().__init__(
            f"TalentLMS has no course {', '.join(course_ids)} (course list as of {as_of}); "
            "create it in TalentLMS or pick an existing one"
        )
        self.course_ids = course_ids


class CourseListUnavailable(RuntimeError):
    """The enrollment worker has not loaded TalentLMS's course list yet."""


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    keys = ("product_id", "course_ids", "plans", "access_days", "grace_days", "revision", "changed_at")
    return {key: doc.get(key) for key in keys}


class Catalogue:
    def __init__(
        self,
        store: DocumentStore,
        *,
        outbox: Outbox | None = None,
        clock: Callable[[], str] = lambda: format_time(utc_now()),
    ) -> None:
        self.store = store
        self.outbox = outbox or Outbox(store)
        self.clock = clock

    def get(self, product_id: str) -> dict[str, Any] | None:
        doc = self.store.get(PRODUCTS, product_id)
        if doc is None or doc.get("removed"):
            return None
        return _public(doc)

    def list(self) -> list[dict[str, Any]]:
        docs = self.store.query(PRODUCTS, [Filter("removed", "==", False)])
        return sorted((_public(doc.data) for doc in docs), key=lambda d: d["product_id"])

    def put(self, mapping: ProductMapping, actor: str = "admin-api") -> tuple[dict[str, Any], bool]:
        """Create or replace; returns (mapping, created). An identical PUT changes nothing (no revision)."""

        def work(tx: Transaction) -> tuple[dict[str, Any], bool]:
            now = self.clock()
            before = tx.get(PRODUCTS, mapping.product_id)
            live_before = before if before and not before.get("removed") else None
            after = {**mapping.to_json(), "removed": False}
            if live_before and {k: live_before.get(k) for k in after} == after:
                return _public(live_before), False
            revision = int((before or {}).get("revision", 0)) + 1
            doc = {**after, "revision": revision, "changed_at": now}
            tx.set(PRODUCTS, mapping.product_id, doc)
            self._audit(tx, "product.mapped", mapping.product_id, revision, live_before, doc, actor, now)
            self._announce(tx, PRODUCT_MAPPED, doc)
            fanout.schedule(tx, mapping.product_id, revision, now)
            return _public(doc), live_before is None

        return self.store.transaction(work)

    def delete(self, product_id: str, actor: str = "admin-api") -> dict[str, Any] | None:
        """Remove the mapping (None when there was none). Its courses are removed from students whom no
        other purchase covers; their approvals park until the product is mapped again."""

        def work(tx: Transaction) -> dict[str, Any] | None:
            now = self.clock()
            before = tx.get(PRODUCTS, product_id)
            if before is None or before.get("removed"):
                return None
            revision = int(before.get("revision", 0)) + 1
            doc = {
                "product_id": product_id,
                "course_ids": [],
                "plans": {},
                "access_days": before.get("access_days"),
                "grace_days": before.get("grace_days"),
                "removed": True,
                "revision": revision,
                "changed_at": now,
            }
            tx.set(PRODUCTS, product_id, doc)
            self._audit(tx, "product.unmapped", product_id, revision, before, doc, actor, now)
            self._announce(tx, PRODUCT_UNMAPPED, doc)
            fanout.schedule(tx, product_id, revision, now)
            return _public(doc)

        return self.store.transaction(work)

    # --- checks and previews -------------------------------------------------------------------------------

    def known_courses(self) -> dict[str, Any]:
        """TalentLMS's course list as the worker last cached it."""
        doc = self.store.get(LMS_STATE, COURSES_DOC)
        if not doc or doc.get("courses") is None:
            raise CourseListUnavailable(
                "TalentLMS's course list is not loaded yet (the enrollment worker loads it at start); "
                "try again in a minute"
            )
        return doc

    def check_courses(self, mapping: ProductMapping) -> None:
        doc = self.known_courses()
        known = {str(course["id"]) for course in doc["courses"]}
        wanted = set(mapping.course_ids) | {c for courses in mapping.plans.values() for c in courses}
        unknown = sorted(wanted - known, key=lambda c: (len(c), c))
        if unknown:
            # A course created in TalentLMS minutes ago: ask the worker to read the list again.
            self.store.set(LMS_STATE, COURSES_DOC, {**doc, "refresh_requested": True})
            raise UnknownCourses(unknown, doc.get("fetched_at"))

    def dry_run(self, product_id: str, mapping: ProductMapping | None) -> dict[str, Any]:
        """What applying ``mapping`` (None: deleting it) would change, without changing anything."""
        reader = StoreReader(self.store)
        students = sorted(
            {
                doc.data["student_id"]
                for doc in self.store.scan(ACCESSES, [Filter("product_id", "==", product_id)])
                if doc.data.get("student_id")
            }
        )
        gains: dict[str, int] = {}
        losses: dict[str, int] = {}
        gaining = losing = 0
        for student_id in students:
            unit = load_student(reader, student_id)
            if unit is None:
                continue
            after = {**unit.mappings, product_id: mapping}
            change = impact(unit.sources, unit.mappings, after)
            gaining += bool(change.gains)
            losing += bool(change.losses)
            for course in change.gains:
                gains[course] = gains.get(course, 0) + 1
            for course in change.losses:
                losses[course] = losses.get(course, 0) + 1
        current = mapping_from_doc(self.store.get(PRODUCTS, product_id))
        return {
            "product_id": product_id,
            "before": current.to_json() if current else None,
            "after": mapping.to_json() if mapping else None,
            "students_with_access": len(students),
            "students_gaining": gaining,
            "students_losing": losing,
            "courses": {
                course: {"gain": gains.get(course, 0), "lose": losses.get(course, 0)}
                for course in sorted(set(gains) | set(losses), key=lambda c: (len(c), c))
            },
        }

    def audit_trail(self, product_id: str) -> list[dict[str, Any]]:
        docs = self.store.query(AUDIT, [Filter("product_id", "==", product_id)])
        return sorted((doc.data for doc in docs), key=lambda d: d["revision"])

    def parked(self, product_id: str | None = None) -> list[dict[str, Any]]:
        filters = [Filter("product_id", "==", product_id)] if product_id else []
        docs = self.store.query(PARKED, filters)
        return sorted((doc.data for doc in docs), key=lambda d: d["parked_at"])

    def _audit(self, tx, action, product_id, revision, before, after, actor, now) -> None:
        tx.create(
            AUDIT,
            "aud-" + uuid.uuid4().hex,
            {
                "action": action,
                "product_id": product_id,
                "revision": revision,
                "before": _public(before) if before else None,
                "after": _public(after),
                "actor": actor,
                "at": now,
            },
        )

    def _announce(self, tx: Transaction, event_type: str, doc: dict[str, Any]) -> None:
        data = {
            "product_id": doc["product_id"],
            "course_ids": list(doc["course_ids"]),
            "plans": {plan: list(courses) for plan, courses in doc["plans"].items()},
            "access_days": doc.get("access_days"),
            "grace_days": doc.get("grace_days"),
            "revision": doc["revision"],
            "changed_at": doc["changed_at"],
            "removed": bool(doc["removed"]),
        }
        event = new_event(
            event_type,
            data,
            source=EVENT_SOURCE,
            correlation_id=f"product:{doc['product_id']}",
            subject=doc["product_id"],
        )
        self.outbox.add(tx, CATALOGUE, event, f"product:{doc['product_id']}")
