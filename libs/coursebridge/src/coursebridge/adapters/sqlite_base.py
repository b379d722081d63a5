"""SQLite plumbing shared by the embedded bus and store.

WAL mode lets several processes on one machine (the API, the relay, the workers of ``make run``) share one
file: readers never block the writer. Writers queue on an exclusive ``flock`` of a sidecar lock file
(plus a thread lock inside the process) before ``BEGIN IMMEDIATE``: the kernel wakes the next writer the
moment the lock is released, where SQLite's own busy handler would sleep and retry (tail latencies of
hundreds of milliseconds under contention). ``synchronous=FULL`` makes a commit survive power loss, which
is what "stored durably before answering" means.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000


class SqliteDatabase:
    """One file, one connection per thread (sqlite3 connections must not cross threads)."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        with self._writer_turn():
            # Idempotent DDL; executescript commits by itself.
            self.connection().executescript(schema)

    def connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        with self._write_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock up front, so read-modify-write cannot interleave."""
        connection = self.connection()
        with self._writer_turn():
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            else:
                connection.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                with suppress(sqlite3.ProgrammingError):
                    connection.close()
            self._connections.clear()
        self._local = threading.local()
        with suppress(OSError):
            os.close(self._lock_fd)
