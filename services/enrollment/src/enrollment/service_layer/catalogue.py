"""Product mappings (the admin API's use cases): every change audited and announced through the outbox.

The mapping document, its audit record and the catalogue event are written in one transaction, so the
API never waits on the bus and a change is never kept without its announcement (or the reverse). A
deleted mapping stays as a tombstone so revisions keep increasing across delete and re-create.
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
from enrollment.domain.mapping import ProductMapping
from enrollment.service_layer.saga import EVENT_SOURCE, PARKED, PRODUCTS

AUDIT = "audit"


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
            return _public(doc), live_before is None

        return self.store.transaction(work)

    def delete(self, product_id: str, actor: str = "admin-api") -> dict[str, Any] | None:
        """Remove the mapping (None when there was none). Existing enrollments stay; new approvals park."""

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
            return _public(doc)

        return self.store.transaction(work)

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
