"""Embedded document store on SQLite: the laptop twin of the Firestore adapter."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from coursebridge.adapters.sqlite_base import SqliteDatabase
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

# A rowid table with a unique key rather than WITHOUT ROWID: documents are kilobytes, and SQLite keeps
# large rows out of the key's B-tree only in rowid tables (measured: ~2x faster writes here).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (owner, kind, id)
);
"""

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_OPERATORS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _json_path(field: str) -> str:
    if not _FIELD.match(field):
        raise ValueError(f"unsupported field name {field!r}")
    return "$." + field


def _encode(data: JSONDocument) -> str:
    if not isinstance(data, dict):
        raise TypeError("a document must be a JSON object")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _SqliteTransaction(Transaction):
    def __init__(self, connection: sqlite3.Connection, owner: str) -> None:
        self._connection = connection
        self._owner = owner

    def get(self, kind: str, doc_id: str) -> JSONDocument | None:
        row = self._connection.execute(
            "SELECT data FROM documents WHERE owner=? AND kind=? AND id=?", (self._owner, kind, doc_id)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def create(self, kind: str, doc_id: str, data: JSONDocument) -> None:
        try:
            self._connection.execute(
                "INSERT INTO documents (owner, kind, id, data) VALUES (?, ?, ?, ?)",
                (self._owner, kind, doc_id, _encode(data)),
            )
        except sqlite3.IntegrityError:
            raise DocumentExists(f"{kind}/{doc_id}") from None

    def set(self, kind: str, doc_id: str, data: JSONDocument) -> None:
        self._connection.execute(
            "INSERT INTO documents (owner, kind, id, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (owner, kind, id) DO UPDATE SET data = excluded.data",
            (self._owner, kind, doc_id, _encode(data)),
        )

    def delete(self, kind: str, doc_id: str) -> None:
        self._connection.execute(
            "DELETE FROM documents WHERE owner=? AND kind=? AND id=?", (self._owner, kind, doc_id)
        )


class SqliteStore(DocumentStore):
    def __init__(self, owner: str, path: Path) -> None:
        super().__init__(owner)
        try:
            self._db = SqliteDatabase(path, _SCHEMA)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot open {path}: {error}") from error

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._db.connection().execute(sql, params).fetchall()
        except sqlite3.OperationalError as error:
            raise StoreUnavailable(str(error)) from error

    def get(self, kind: str, doc_id: str) -> JSONDocument | None:
        rows = self._read(
            "SELECT data FROM documents WHERE owner=? AND kind=? AND id=?", (self.owner, kind, doc_id)
        )
        return json.loads(rows[0][0]) if rows else None

    def create(self, kind: str, doc_id: str, data: JSONDocument) -> bool:
        try:
            self.transaction(lambda tx: tx.create(kind, doc_id, data))
        except DocumentExists:
            return False
        return True

    def set(self, kind: str, doc_id: str, data: JSONDocument) -> None:
        self.transaction(lambda tx: tx.set(kind, doc_id, data))

    def update(self, kind: str, doc_id: str, fields: JSONDocument) -> None:
        def merge(tx: Transaction) -> None:
            current = tx.get(kind, doc_id)
            if current is None:
                raise KeyError(f"{kind}/{doc_id} does not exist")
            tx.set(kind, doc_id, {**current, **fields})

        self.transaction(merge)

    def delete(self, kind: str, doc_id: str) -> None:
        self.transaction(lambda tx: tx.delete(kind, doc_id))

    def _where(self, kind: str, filters: Sequence[Filter]) -> tuple[list[str] | None, list[Any]]:
        sql = ["SELECT id, data FROM documents WHERE owner=? AND kind=?"]
        params: list[Any] = [self.owner, kind]
        for condition in filters:
            path = _json_path(condition.field)
            if condition.op == "in":
                values = list(condition.value)
                if not values:
                    return None, []
                sql.append(f"AND json_extract(data, ?) IN ({', '.join('?' * len(values))})")
                params += [path, *values]
            elif condition.value is None and condition.op in ("==", "!="):
                sql.append("AND json_extract(data, ?) IS " + ("NULL" if condition.op == "==" else "NOT NULL"))
                params.append(path)
            else:
                sql.append(f"AND json_extract(data, ?) {_OPERATORS[condition.op]} ?")
                params += [path, condition.value]
        return sql, params

    def count(self, kind: str, filters: Sequence[Filter] = ()) -> int:
        sql, params = self._where(kind, filters)
        if sql is None:
            return 0
        sql[0] = "SELECT COUNT(*) FROM documents WHERE owner=? AND kind=?"
        return int(self._read(" ".join(sql), params)[0][0])

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
        sql, params = self._where(kind, filters)
        if sql is None:
            return []
        direction = "DESC" if descending else "ASC"
        if order_by:
            path = _json_path(order_by)
            sql.append("AND json_extract(data, ?) IS NOT NULL")
            params.append(path)
            if start_after is not None:
                beyond = "<" if descending else ">"
                sql.append(
                    f"AND (json_extract(data, ?) {beyond} ? OR (json_extract(data, ?) = ? AND id {beyond} ?))"
                )
                params += [path, start_after.value, path, start_after.value, start_after.doc_id]
            sql.append(f"ORDER BY json_extract(data, ?) {direction}, id {direction}")
            params.append(path)
        else:
            if start_after is not None:
                sql.append("AND id < ?" if descending else "AND id > ?")
                params.append(start_after.doc_id)
            sql.append(f"ORDER BY id {direction}")
        if limit is not None:
            sql.append("LIMIT ?")
            params.append(int(limit))
        return [Document(id=row[0], data=json.loads(row[1])) for row in self._read(" ".join(sql), params)]

    def transaction(self, work: Callable[[Transaction], T]) -> T:
        try:
            with self._db.write() as connection:
                return work(_SqliteTransaction(connection, self.owner))
        except sqlite3.OperationalError as error:
            raise StoreUnavailable(str(error)) from error

    def check(self) -> None:
        self._read("SELECT 1", ())

    def close(self) -> None:
        self._db.close()
