"""The ports every service talks to: a message bus and a document store.

Two adapter families implement them: *embedded* (SQLite files under ``COURSEBRIDGE_DATA_DIR``, for a laptop
with nothing installed) and *gcp* (Pub/Sub and Firestore, or their emulators). Services depend on these
abstractions only; ``coursebridge.backends`` picks the family from configuration.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from coursebridge.events import Event
from coursebridge.topology import Topology

T = TypeVar("T")
JSONDocument = dict[str, Any]


# --- bus -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """How a message reached the handler.

    ``attempt`` counts *handler runs* of this message: 1 the first time the handler sees it, one more after
    each failure. A message held back behind an earlier one of its ordering key is not attempted, so it
    starts at 1 however long it waited (both adapters; the contract suite checks it).

    ``attributes`` are the message's transport attributes: a dead-letter hold's keeper reads why and after
    how many attempts a message was given up on (``DEAD_LETTER_REASON_ATTRIBUTE``).
    """

    subscription: str
    message_id: str
    attempt: int
    ordering_key: str | None
    attributes: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


DEAD_LETTER_REASON_ATTRIBUTE = "coursebridge-dead-letter-reason"
"""Message attribute saying why a message was dead-lettered (set by both bus adapters)."""


class PermanentFailure(Exception):
    """Raised by a handler for a message that no retry can fix: it goes to the dead-letter topic now."""


class BusUnavailable(Exception):
    """The bus could not take a publish right now; the caller keeps the event and tries again later."""


class PublishRejected(Exception):
    """The bus refused this message for good (e.g. Pub/Sub's InvalidArgument): retrying cannot help."""


EventHandler = Callable[[Event, Delivery], None]


class SubscriptionRunner(abc.ABC):
    """A running subscriber. ``stop`` stops pulling, lets in-flight handlers finish, then returns."""

    @abc.abstractmethod
    def stop(self, timeout: float = 30.0) -> None: ...

    @abc.abstractmethod
    def running(self) -> bool: ...


class MessageBus(abc.ABC):
    """At-least-once delivery; a message is acked only after its handler returned.

    A handler that raises gets the message again later (with backoff); after the subscription's
    ``max_delivery_attempts`` failed handler runs it goes to the dead-letter topic. Messages with the same
    ordering key are handed over one at a time, in publish order.
    """

    @abc.abstractmethod
    def publish(self, topic: str, event: Event, ordering_key: str | None = None) -> str:
        """Publish durably and return the message id; raises ``BusUnavailable`` when it could not."""

    @abc.abstractmethod
    def subscribe(
        self, subscription: str, handler: EventHandler, *, max_in_flight: int = 10
    ) -> SubscriptionRunner:
        """Start delivering messages of ``subscription`` to ``handler`` in the background."""

    @abc.abstractmethod
    def provision(self, topology: Topology) -> None:
        """Create missing topics and subscriptions (local stacks and tests; GCP uses k8s/ manifests)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise when the bus is unreachable (readiness probe)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# --- document store ------------------------------------------------------------------------------------

FilterOp = Literal["==", "!=", "<", "<=", ">", ">=", "in"]


@dataclass(frozen=True)
class Filter:
    field: str
    op: FilterOp
    value: Any


@dataclass(frozen=True)
class Document:
    id: str
    data: JSONDocument


@dataclass(frozen=True)
class Cursor:
    """Where the previous page of a query ended: its last document's id and ``order_by`` value.

    A page query continues strictly after it in the query's order (``order_by`` value, then id), so a scan
    visits every document once even while others are added or removed behind it.
    """

    doc_id: str
    value: Any = None

    @classmethod
    def after(cls, document: Document, order_by: str | None) -> Cursor:
        return cls(document.id, _field(document.data, order_by) if order_by else None)


def _field(data: JSONDocument, path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class DocumentExists(Exception):
    """``create`` inside a transaction found the document already there."""


class StoreUnavailable(Exception):
    """The store could not be reached; nothing was written."""


class Transaction(abc.ABC):
    """Read-modify-write on a service's documents.

    Do the reads first. A read after a write is allowed (a helper such as ``Outbox.add`` may read its own
    document inside the caller's transaction), but it never sees this transaction's own writes on
    Firestore, so code must not rely on reading back what it wrote.
    """

    @abc.abstractmethod
    def get(self, kind: str, doc_id: str) -> JSONDocument | None: ...

    @abc.abstractmethod
    def create(self, kind: str, doc_id: str, data: JSONDocument) -> None:
        """Write a new document; the commit fails with ``DocumentExists`` if it already exists."""

    @abc.abstractmethod
    def set(self, kind: str, doc_id: str, data: JSONDocument) -> None: ...

    @abc.abstractmethod
    def delete(self, kind: str, doc_id: str) -> None: ...


class DocumentStore(abc.ABC):
    """One service's own collection. ``kind`` groups documents of one sort (e.g. ``webhooks``).

    Values are JSON types only; timestamps are stored as RFC 3339 UTC strings so they sort the same way
    in every backend.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner

    @abc.abstractmethod
    def get(self, kind: str, doc_id: str) -> JSONDocument | None: ...

    @abc.abstractmethod
    def create(self, kind: str, doc_id: str, data: JSONDocument) -> bool:
        """Create if absent: True when written, False when a document with that id already existed."""

    @abc.abstractmethod
    def set(self, kind: str, doc_id: str, data: JSONDocument) -> None: ...

    @abc.abstractmethod
    def update(self, kind: str, doc_id: str, fields: JSONDocument) -> None:
        """Merge top-level ``fields`` into an existing document."""

    @abc.abstractmethod
    def delete(self, kind: str, doc_id: str) -> None: ...

    @abc.abstractmethod
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
        """Matching documents ordered by ``order_by`` (then id), or by id when none is given."""

    @abc.abstractmethod
    def count(self, kind: str, filters: Sequence[Filter] = ()) -> int:
        """How many documents match, without reading them (an aggregation query on Firestore)."""

    def scan(
        self,
        kind: str,
        filters: Sequence[Filter] = (),
        *,
        order_by: str | None = None,
        page_size: int = 200,
    ) -> Iterator[Document]:
        """Every matching document, page by page to the end: no background loop stops at a first page."""
        cursor: Cursor | None = None
        while True:
            page = self.query(kind, filters, order_by=order_by, limit=page_size, start_after=cursor)
            yield from page
            if len(page) < page_size:
                return
            cursor = Cursor.after(page[-1], order_by)

    @abc.abstractmethod
    def transaction(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` atomically, retrying it on contention; ``work`` must be free of side effects."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise when the store is unreachable (readiness probe)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
