"""One contract for every ``DocumentStore`` adapter: embedded SQLite and Firestore (on its emulator)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest

from coursebridge.ports import Cursor, DocumentExists, DocumentStore, Filter, Transaction

if TYPE_CHECKING:
    from conftest import StoreBackend

pytestmark = pytest.mark.timeout(60)

KIND = "webhooks"
RICH: dict[str, Any] = {
    "status": "APPROVED",
    "amount": 197.5,
    "installments": 3,
    "refunded": False,
    "coupon": None,
    "buyer": {"name": "José da Silva", "email": "jose@example.com", "tags": ["vip", "früh"]},
    "items": [{"offer": "x1", "qty": 1}, {"offer": "x2", "qty": 2}],
    "received_at": "2026-03-04T05:06:07.890Z",
}


def assert_plain_json(value: Any) -> None:
    """Only the plain JSON types come back (no proxies, no timestamps, no tuples)."""
    if isinstance(value, dict):
        assert type(value) is dict
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        assert type(value) is list
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), repr(value)


@pytest.fixture
def store(store_backend: StoreBackend) -> DocumentStore:
    return store_backend.make("ingest")


def seed(store: DocumentStore) -> None:
    for n in range(1, 7):
        store.set(
            KIND,
            f"doc-{n}",
            {"n": n, "parity": "even" if n % 2 == 0 else "odd", "at": f"2026-01-0{n}T00:00:00.000Z"},
        )


def ids(documents: list) -> list[str]:
    return [document.id for document in documents]


# --- single documents -------------------------------------------------------------------------------------


def test_get_of_a_missing_document_is_none(store: DocumentStore) -> None:
    assert store.get(KIND, "nope") is None


def test_set_then_get_returns_the_same_plain_json(store: DocumentStore) -> None:
    store.set(KIND, "a", RICH)

    got = store.get(KIND, "a")

    assert got == RICH
    assert_plain_json(got)
    assert type(got["amount"]) is float and type(got["installments"]) is int


def test_set_replaces_the_whole_document(store: DocumentStore) -> None:
    store.set(KIND, "a", {"x": 1, "y": 2})
    store.set(KIND, "a", {"z": 3})

    assert store.get(KIND, "a") == {"z": 3}


def test_create_if_absent_writes_once_and_keeps_the_first_data(store: DocumentStore) -> None:
    assert store.create(KIND, "hp-1", {"attempt": 1}) is True
    assert store.create(KIND, "hp-1", {"attempt": 2}) is False

    assert store.get(KIND, "hp-1") == {"attempt": 1}


def test_update_merges_top_level_fields(store: DocumentStore) -> None:
    store.set(KIND, "a", {"status": "NEW", "buyer": {"name": "Ana", "email": "a@x"}, "n": 1})

    store.update(KIND, "a", {"status": "DONE", "buyer": {"name": "Bia"}, "extra": [1, 2]})

    assert store.get(KIND, "a") == {"status": "DONE", "buyer": {"name": "Bia"}, "n": 1, "extra": [1, 2]}


def test_update_of_a_missing_document_raises_key_error(store: DocumentStore) -> None:
    with pytest.raises(KeyError):
        store.update(KIND, "nope", {"status": "DONE"})
    with pytest.raises(KeyError):
        store.update(KIND, "nope", {})
    assert store.get(KIND, "nope") is None


def test_delete_removes_and_is_idempotent(store: DocumentStore) -> None:
    store.set(KIND, "a", {"x": 1})

    store.delete(KIND, "a")
    store.delete(KIND, "a")

    assert store.get(KIND, "a") is None


def test_kinds_are_isolated(store: DocumentStore) -> None:
    store.set("webhooks", "same-id", {"kind": "webhook"})
    store.set("outbox", "same-id", {"kind": "outbox"})

    assert store.get("webhooks", "same-id") == {"kind": "webhook"}
    assert store.get("outbox", "same-id") == {"kind": "outbox"}
    assert ids(store.query("outbox")) == ["same-id"]
    assert store.query("nothing-here") == []


def test_owners_are_isolated(store_backend: StoreBackend) -> None:
    ingest, enrollment = store_backend.make("ingest"), store_backend.make("enrollment")

    ingest.set(KIND, "a", {"owner": "ingest"})

    assert enrollment.get(KIND, "a") is None
    assert enrollment.query(KIND) == []
    assert enrollment.create(KIND, "a", {"owner": "enrollment"}) is True
    assert ingest.get(KIND, "a") == {"owner": "ingest"}
    assert enrollment.get(KIND, "a") == {"owner": "enrollment"}


def test_two_stores_of_one_owner_share_documents(store_backend: StoreBackend) -> None:
    writer, reader = store_backend.make("ingest"), store_backend.make("ingest")

    writer.set(KIND, "a", {"x": 1})

    assert reader.get(KIND, "a") == {"x": 1}


# --- queries ----------------------------------------------------------------------------------------------


def test_query_equality(store: DocumentStore) -> None:
    seed(store)

    found = store.query(KIND, [Filter("parity", "==", "even")], order_by="n")

    assert ids(found) == ["doc-2", "doc-4", "doc-6"]
    assert found[0].data == {"n": 2, "parity": "even", "at": "2026-01-02T00:00:00.000Z"}
    assert_plain_json(found[0].data)


def test_query_ranges(store: DocumentStore) -> None:
    seed(store)

    assert ids(store.query(KIND, [Filter("n", "<", 3)], order_by="n")) == ["doc-1", "doc-2"]
    assert ids(store.query(KIND, [Filter("n", ">=", 5)], order_by="n")) == ["doc-5", "doc-6"]
    assert ids(store.query(KIND, [Filter("n", ">", 2), Filter("n", "<=", 4)], order_by="n")) == [
        "doc-3",
        "doc-4",
    ]
    assert ids(store.query(KIND, [Filter("at", "<", "2026-01-03")], order_by="at")) == ["doc-1", "doc-2"]


def test_query_in(store: DocumentStore) -> None:
    seed(store)

    found = store.query(KIND, [Filter("n", "in", [1, 4, 99])], order_by="n")

    assert ids(found) == ["doc-1", "doc-4"]
    assert store.query(KIND, [Filter("n", "in", [])]) == []


def test_query_order_and_limit(store: DocumentStore) -> None:
    seed(store)

    assert ids(store.query(KIND, order_by="at")) == [f"doc-{n}" for n in range(1, 7)]
    assert ids(store.query(KIND, order_by="at", descending=True, limit=2)) == ["doc-6", "doc-5"]
    assert ids(
        store.query(KIND, [Filter("parity", "==", "odd")], order_by="n", descending=True, limit=2)
    ) == [
        "doc-5",
        "doc-3",
    ]
    assert len(store.query(KIND, limit=4)) == 4
    assert sorted(ids(store.query(KIND))) == [f"doc-{n}" for n in range(1, 7)]


def test_query_filters_on_a_nested_field(store: DocumentStore) -> None:
    store.set(KIND, "a", {"buyer": {"country": "BR"}})
    store.set(KIND, "b", {"buyer": {"country": "PT"}})

    assert ids(store.query(KIND, [Filter("buyer.country", "==", "PT")])) == ["b"]


# --- transactions -----------------------------------------------------------------------------------------


def test_transaction_returns_the_value_of_work(store: DocumentStore) -> None:
    store.set(KIND, "a", {"n": 41})

    def work(tx: Transaction) -> int:
        current = tx.get(KIND, "a")
        assert current is not None
        tx.set(KIND, "a", {"n": current["n"] + 1})
        tx.create(KIND, "b", {"from": "a"})
        return current["n"] + 1

    assert store.transaction(work) == 42
    assert store.get(KIND, "a") == {"n": 42}
    assert store.get(KIND, "b") == {"from": "a"}


# In the Firestore emulator a transaction's reads hold shared locks until it ends, so two transactions that
# read the same document and then both commit wait for each other until the emulator's hard-coded 2 s lock
# timeout aborts one (real Firestore wounds one at once). Two threads incrementing back to back collide
# almost every time: 25 increments each take 40-100 s there, so the emulator run does fewer.
INCREMENTS_PER_THREAD = {"embedded": 25, "gcp": 5}


@pytest.mark.timeout(120)
def test_transaction_read_modify_write_is_atomic_under_contention(store_backend: StoreBackend) -> None:
    increments = INCREMENTS_PER_THREAD[store_backend.kind]
    store_backend.make("ingest").set(KIND, "counter", {"value": 0})
    errors: list[BaseException] = []

    def increment(tx: Transaction) -> None:
        current = tx.get(KIND, "counter")
        assert current is not None
        tx.set(KIND, "counter", {"value": current["value"] + 1})

    def worker() -> None:
        store = store_backend.make("ingest")  # one store per thread, as in two processes
        try:
            for _ in range(increments):
                store.transaction(increment)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(100)

    assert not errors, errors
    assert store_backend.make("ingest").get(KIND, "counter") == {"value": 2 * increments}


def test_create_of_an_existing_document_in_a_transaction_raises_document_exists(store: DocumentStore) -> None:
    store.set(KIND, "taken", {"v": 1})

    def work(tx: Transaction) -> None:
        tx.set(KIND, "other", {"v": 2})
        tx.create(KIND, "taken", {"v": 3})

    with pytest.raises(DocumentExists):
        store.transaction(work)
    assert store.get(KIND, "taken") == {"v": 1}
    assert store.get(KIND, "other") is None


def test_a_transaction_whose_work_raises_writes_nothing(store: DocumentStore) -> None:
    store.set(KIND, "a", {"v": 1})

    class Boom(Exception):
        pass

    def work(tx: Transaction) -> None:
        tx.get(KIND, "a")
        tx.set(KIND, "a", {"v": 2})
        tx.create(KIND, "new", {"v": 1})
        tx.delete(KIND, "a")
        raise Boom

    with pytest.raises(Boom):
        store.transaction(work)
    assert store.get(KIND, "a") == {"v": 1}
    assert store.get(KIND, "new") is None


def test_transaction_delete_and_missing_reads(store: DocumentStore) -> None:
    store.set(KIND, "a", {"v": 1})

    def work(tx: Transaction) -> tuple[Any, Any]:
        seen = (tx.get(KIND, "a"), tx.get(KIND, "missing"))
        tx.delete(KIND, "a")
        return seen

    assert store.transaction(work) == ({"v": 1}, None)
    assert store.get(KIND, "a") is None


def test_check_passes(store: DocumentStore) -> None:
    store.check()


# --- paging with a cursor ---------------------------------------------------------------------------------


def test_pages_continue_after_the_cursor_in_order(store: DocumentStore) -> None:
    seed(store)

    first = store.query(KIND, order_by="n", limit=4)
    rest = store.query(KIND, order_by="n", limit=4, start_after=Cursor.after(first[-1], "n"))

    assert ids(first) + ids(rest) == [f"doc-{n}" for n in range(1, 7)]


def test_pages_without_order_follow_the_document_id(store: DocumentStore) -> None:
    seed(store)

    first = store.query(KIND, [Filter("parity", "==", "odd")], limit=2)
    rest = store.query(
        KIND, [Filter("parity", "==", "odd")], limit=2, start_after=Cursor.after(first[-1], None)
    )

    assert ids(first) + ids(rest) == ["doc-1", "doc-3", "doc-5"]


def test_descending_pages_break_ties_by_id(store: DocumentStore) -> None:
    for n in range(6):
        store.set(KIND, f"tie-{n}", {"rank": n // 3})

    first = store.query(KIND, order_by="rank", descending=True, limit=2)
    rest = store.query(
        KIND, order_by="rank", descending=True, limit=10, start_after=Cursor.after(first[-1], "rank")
    )

    assert ids(first) + ids(rest) == ["tie-5", "tie-4", "tie-3", "tie-2", "tie-1", "tie-0"]


def test_scan_reads_every_page_to_the_end(store: DocumentStore) -> None:
    for n in range(23):
        store.set(KIND, f"item-{n:02d}", {"n": n, "stale": True})

    seen = [doc.id for doc in store.scan(KIND, [Filter("stale", "==", True)], order_by="n", page_size=5)]

    assert seen == [f"item-{n:02d}" for n in range(23)]


def test_count_matches_without_reading(store: DocumentStore) -> None:
    seed(store)

    assert store.count(KIND) == 6
    assert store.count(KIND, [Filter("parity", "==", "odd")]) == 3
    assert store.count(KIND, [Filter("n", ">", 4)]) == 2
    assert store.count(KIND, [Filter("n", "in", [])]) == 0
    assert store.count("nothing-here") == 0
