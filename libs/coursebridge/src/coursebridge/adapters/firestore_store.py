"""The ``DocumentStore`` port on Firestore in Native mode (or its emulator, via ``FIRESTORE_EMULATOR_HOST``).

Layout: one root collection per service, one document per kind, its documents under ``items``::

    <owner>/<kind>/items/<doc_id>

Calls have a bounded retry and timeout so an outage surfaces as ``StoreUnavailable`` within seconds
instead of hanging a request. Queries combining an equality or range filter with an ``order_by`` on
another field need a composite index on real Firestore (the emulator does not ask for one); they belong
in the deployment's index definitions.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from coursebridge.events.envelope import format_time
from coursebridge.ports import (
    Cursor,
    Document,
    DocumentExists,
    DocumentStore,
    Filter,
    JSONDocument,
    StoreUnavailable,
    Transaction,
)

T = TypeVar("T")

ITEMS = "items"
_UNAVAILABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Unknown,
    gexc.Cancelled,
    gexc.ResourceExhausted,
    gexc.RetryError,
)
_TRANSACTION_ROUNDS = 8  # outer retries of a whole transaction (each with the client's own commit retries)
_IN_LIMIT = 30  # Firestore's cap on the values of one "in" filter


def plain(value: Any) -> Any:
    """Firestore values back to plain JSON types (maps and arrays may come back as other mappings)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, datetime):  # only if somebody stored a datetime; the port says strings
        return format_time(value)
    return value


class _FirestoreTransaction(Transaction):
    """Reads go to Firestore at once; writes are kept and handed to the transaction when ``work`` returns.

    Firestore refuses a read after a write in one transaction. Keeping the writes until the end lets a
    helper that runs inside a caller's transaction (the outbox's per-key queue) read its own document
    after the caller wrote others; reads still never see this transaction's own writes, as the port says.
    """

    def __init__(self, store: FirestoreStore, transaction: firestore.Transaction) -> None:
        self._store = store
        self._transaction = transaction
        self._writes: list[tuple[str, firestore.DocumentReference, JSONDocument | None]] = []

    def get(self, kind: str, doc_id: str) -> JSONDocument | None:
        snapshot = self._store._ref(kind, doc_id).get(
            transaction=self._transaction, retry=self._store._retry, timeout=self._store._timeout
        )
        return plain(snapshot.to_dict()) if snapshot.exists else None

    def create(self, kind: str, doc_id: str, data: JSONDocument) -> None:
        self._writes.append(("create", self._store._ref(kind, doc_id), _checked(data)))

    def set(self, kind: str, doc_id: str, data: JSONDocument) -> None:
        self._writes.append(("set", self._store._ref(kind, doc_id), _checked(data)))

    def delete(self, kind: str, doc_id: str) -> None:
        self._writes.append(("delete", self._store._ref(kind, doc_id), None))

    def flush(self) -> None:
        """Hand the writes over, a later ``set`` of a document replacing an earlier ``set`` of it."""
        last_set = {ref.path: index for index, (op, ref, _) in enumerate(self._writes) if op == "set"}
        for index, (op, ref, data) in enumerate(self._writes):
            if op == "set" and last_set[ref.path] != index:
                continue
            if op == "create":
                self._transaction.create(ref, data)
            elif op == "set":
                self._transaction.set(ref, data)
            else:
                self._transaction.delete(ref)
        self._writes.clear()


def _checked(data: JSONDocument) -> JSONDocument:
    if not isinstance(data, dict):
        raise TypeError("a document must be a JSON object")
    return data


class FirestoreStore(DocumentStore):
    def __init__(
        self,
        owner: str,
        *,
        project: str,
        database: str = "(default)",
        timeout: float = 10.0,
    ) -> None:
        super().__init__(owner)
        self._client = firestore.Client(project=project, database=database)
        self._timeout = timeout
        self._retry = gretry.Retry(
            initial=0.1,
            maximum=2.0,
            multiplier=2.0,
            predicate=gretry.if_exception_type(
                gexc.ServiceUnavailable, gexc.InternalServerError, gexc.DeadlineExceeded, gexc.Unknown
            ),
            timeout=timeout,
        )

    # --- paths -------------------------------------------------------------------------------------------

    def _items(self, kind: str) -> firestore.CollectionReference:
        return self._client.collection(self.owner).document(kind).collection(ITEMS)

    def _ref(self, kind: str, doc_id: str) -> firestore.DocumentReference:
        return self._items(kind).document(doc_id)

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as error:
            raise StoreUnavailable(f"Firestore {what} failed: {type(error).__name__}: {error}") from error

    # --- single documents --------------------------------------------------------------------------------

    def get(self, kind: str, doc_id: str) -> JSONDocument | None:
        with self._guard("get"):
            snapshot = self._ref(kind, doc_id).get(retry=self._retry, timeout=self._timeout)
        return plain(snapshot.to_dict()) if snapshot.exists else None

    def create(self, kind: str, doc_id: str, data: JSONDocument) -> bool:
        with self._guard("create"):
            try:
                self._ref(kind, doc_id).create(_checked(data), retry=self._retry, timeout=self._timeout)
            except gexc.AlreadyExists:
                return False
        return True

    def set(self, kind: str, doc_id: str, data: JSONDocument) -> None:
        with self._guard("set"):
            self._ref(kind, doc_id).set(_checked(data), retry=self._retry, timeout=self._timeout)

    def update(self, kind: str, doc_id: str, fields: JSONDocument) -> None:
        ref = self._ref(kind, doc_id)
        with self._guard("update"):
            if not fields:  # Firestore refuses an empty update; keep the "must exist" contract
                if not ref.get(retry=self._retry, timeout=self._timeout).exists:
                    raise KeyError(f"{kind}/{doc_id} does not exist")
                return
            # Quote every name so "a.b" stays one top-level field instead of a nested path.
            updates = {FieldPath(name).to_api_repr(): value for name, value in fields.items()}
            try:
                ref.update(updates, retry=self._retry, timeout=self._timeout)
            except gexc.NotFound:
                raise KeyError(f"{kind}/{doc_id} does not exist") from None

    def delete(self, kind: str, doc_id: str) -> None:
        with self._guard("delete"):
            self._ref(kind, doc_id).delete(retry=self._retry, timeout=self._timeout)

    # --- queries -----------------------------------------------------------------------------------------

    def _filtered(self, kind: str, filters: Sequence[Filter]) -> Any | None:
        query: Any = self._items(kind)
        for condition in filters:
            value = condition.value
            if condition.op == "in":
                value = list(value)
                if not value:
                    return None
                if len(value) > _IN_LIMIT:
                    raise ValueError(f"an 'in' filter takes at most {_IN_LIMIT} values on Firestore")
            query = query.where(filter=FieldFilter(condition.field, condition.op, value))
        return query

    def count(self, kind: str, filters: Sequence[Filter] = ()) -> int:
        query = self._filtered(kind, filters)
        if query is None:
            return 0
        with self._guard("count"):
            results = query.count(alias="n").get(retry=self._retry, timeout=self._timeout)
        return int(results[0][0].value)

    def query(
        self,
        kind: str,
        filters: Sequence[Filter] = (),
        *,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        start_after: Cursor | None = None,
    ) -> list[Document]:
        query = self._filtered(kind, filters)
        if query is None:
            return []
        direction = firestore.Query.DESCENDING if descending else firestore.Query.ASCENDING
        ranged = any(condition.op not in ("==", "in") for condition in filters)
        if order_by:
            query = query.order_by(order_by, direction=direction)
        elif ranged and start_after is not None:
            raise ValueError("to page a query with a range filter, order it by the filtered field")
        if order_by or not ranged:
            # Firestore orders by the range field first on its own; an explicit id order would clash.
            query = query.order_by(FieldPath.document_id(), direction=direction)
        if start_after is not None:
            position: dict[str, Any] = {FieldPath.document_id(): self._ref(kind, start_after.doc_id)}
            if order_by:
                position[order_by] = start_after.value
            query = query.start_after(position)
        if limit is not None:
            query = query.limit(int(limit))
        with self._guard("query"):
            snapshots = query.get(retry=self._retry, timeout=self._timeout)
        return [Document(id=snapshot.id, data=plain(snapshot.to_dict())) for snapshot in snapshots]

    # --- transactions ------------------------------------------------------------------------------------

    def transaction(self, work: Callable[[Transaction], T]) -> T:
        @firestore.transactional
        def run(transaction: firestore.Transaction) -> T:
            tx = _FirestoreTransaction(self, transaction)
            result = work(tx)
            tx.flush()
            return result

        last: Exception | None = None
        for round_ in range(_TRANSACTION_ROUNDS):
            try:
                with self._guard("transaction"):
                    return run(self._client.transaction())
            except gexc.AlreadyExists as error:
                raise DocumentExists(str(error.message)) from error
            except gexc.Aborted as error:  # contention on a read (the client only retries a commit)
                last = error
            except ValueError as error:
                # The client's "Failed to commit transaction in N attempts": contention, not a bug.
                if not isinstance(error.__cause__, gexc.Aborted):
                    raise
                last = error
            time.sleep(min(1.0, 0.02 * 2**round_) * random.uniform(0.5, 1.0))
        raise StoreUnavailable(f"transaction kept aborting on contention: {last}") from last

    # --- lifecycle ---------------------------------------------------------------------------------------

    def check(self) -> None:
        try:
            self._client.collection(self.owner).document("_check").get(retry=None, timeout=5.0)
        except gexc.GoogleAPICallError as error:
            raise StoreUnavailable(f"Firestore unreachable: {type(error).__name__}: {error}") from error

    def close(self) -> None:
        self._client.close()
