"""Enrollment's documents and how a use case reads and writes them inside one store transaction.

Kinds (all in enrollment's own collection):

- ``accesses``  — one access source each (``AccessSource`` + buyer name/e-mail + processed event ids);
- ``students``  — one per e-mail: its access ids, its ``LmsRecord`` (TalentLMS user, enrolled, managed,
  intents) and flags the dispatcher and operators query (``in_doubt``, ``has_failures``);
- ``products``  — product → course mappings (``catalogue``), with ``audit`` records;
- ``lms_queue`` — students whose TalentLMS state may differ from desired, one item per student;
- ``parked``    — active purchases whose product is not mapped (for operators; derived, kept current);
- ``fanout``    — mapping changes still being spread to every affected student;
- ``lms_state`` — what the dispatcher and the audit report (quota, pause, last audit), and the cached
  TalentLMS course list.

Transactions read everything first and write after (Firestore's rule), so ``load_student`` is one read
phase and ``StudentUnit.commit`` one write phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coursebridge.ports import DocumentStore, JSONDocument, Transaction
from enrollment.domain.access import AccessSource
from enrollment.domain.desired import Desired, desired
from enrollment.domain.ids import access_doc_id
from enrollment.domain.lms_record import LmsRecord
from enrollment.domain.mapping import ProductMapping

ACCESSES = "accesses"
STUDENTS = "students"
PRODUCTS = "products"
PARKED = "parked"
QUEUE = "lms_queue"
FANOUT = "fanout"
LMS_STATE = "lms_state"

GRANT_LANE = "grant"
REVOKE_LANE = "revoke"


def mapping_from_doc(doc: dict[str, Any] | None) -> ProductMapping | None:
    if doc is None or doc.get("removed"):
        return None
    return ProductMapping.from_json(doc)


class StoreReader(Transaction):
    """Plain reads shaped as a transaction, for planning and previews; writes go through a real one."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store

    def get(self, kind: str, doc_id: str) -> JSONDocument | None:
        return self.store.get(kind, doc_id)

    def create(self, kind: str, doc_id: str, data: JSONDocument) -> None:
        raise TypeError("read-only")

    def set(self, kind: str, doc_id: str, data: JSONDocument) -> None:
        raise TypeError("read-only")

    def delete(self, kind: str, doc_id: str) -> None:
        raise TypeError("read-only")


@dataclass
class StudentUnit:
    """One student as a transaction sees it: read once, decided on, written once."""

    student_id: str
    doc: dict[str, Any]
    sources: list[AccessSource]
    mappings: dict[str, ProductMapping | None]
    record: LmsRecord
    queue: dict[str, Any] | None
    parked_docs: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def email(self) -> str | None:
        return self.doc.get("email")

    @property
    def want(self) -> Desired:
        return desired(self.sources, self.mappings)

    def commit(self, tx: Transaction, record: LmsRecord, now: str) -> None:
        """Write the record (and derived flags) and keep the parked list in step with desired state."""
        self.record = record
        self.doc.update(
            lms=record.to_json(),
            in_doubt=record.in_doubt,
            has_failures=bool(record.failures or record.blocked),
            updated_at=now,
        )
        tx.set(STUDENTS, self.student_id, self.doc)
        parked_now = set(self.want.parked)
        for source in self.sources:
            doc_id = access_doc_id(source.access_id)
            existing = self.parked_docs.get(doc_id)
            if source.access_id in parked_now and existing is None:
                tx.set(
                    PARKED,
                    doc_id,
                    {
                        "access_id": source.access_id,
                        "student_id": self.student_id,
                        "product_id": source.product_id,
                        "plan_id": source.plan_id,
                        "transaction": source.transaction,
                        "email": self.email,
                        "parked_at": now,
                    },
                )
            elif source.access_id not in parked_now and existing is not None:
                tx.delete(PARKED, doc_id)


def load_student(tx: Transaction, student_id: str) -> StudentUnit | None:
    doc = tx.get(STUDENTS, student_id)
    if doc is None:
        return None
    sources: list[AccessSource] = []
    parked_docs: dict[str, dict[str, Any] | None] = {}
    for access_id in doc.get("sources") or []:
        doc_id = access_doc_id(access_id)
        access = tx.get(ACCESSES, doc_id)
        if access is not None:
            sources.append(AccessSource.from_json({**access, "access_id": access_id}))
        parked_docs[doc_id] = tx.get(PARKED, doc_id)
    mappings = {
        product: mapping_from_doc(tx.get(PRODUCTS, product))
        for product in sorted({s.product_id for s in sources if s.product_id})
    }
    return StudentUnit(
        student_id=student_id,
        doc=doc,
        sources=sources,
        mappings=mappings,
        record=LmsRecord.from_json(doc.get("lms")),
        queue=tx.get(QUEUE, student_id),
        parked_docs=parked_docs,
    )


def queue_item(
    existing: dict[str, Any] | None, student_id: str, lane: str, now: str, *, due_at: str | None = None
) -> dict[str, Any]:
    """Enqueue (or re-enqueue) a student. ``since`` keeps the first time it waited, so the buyer who
    waits longest is served first; a revocation keeps its lane's priority until served."""
    item = dict(existing or {"student_id": student_id, "since": now, "attempts": 0, "seq": 0})
    if existing is None or lane == REVOKE_LANE:
        item["lane"] = lane
    item.setdefault("lane", lane)
    item["seq"] = int(item.get("seq") or 0) + 1
    item["due_at"] = due_at or now
    item["updated_at"] = now
    return item
