# ruff: noqa: S608 - identifiers come from analytics.schema/views or are checked; values are parameters
"""Embedded warehouse: one DuckDB file under ``COURSEBRIDGE_DATA_DIR`` (``analytics.duckdb``).

DuckDB lets one process write a file, or several processes read it, never both at once. So no process
keeps the file open: the worker opens it read-write for one batch (a few milliseconds) and closes it,
the API opens it read-only for one request. Either side retries for a short while when the other holds
the lock. The revenue views are the BigQuery SQL of ``sql/views`` transpiled to DuckDB. Timestamps are
stored as naive UTC ``TIMESTAMP`` (like BigQuery's), so ``DATE(ts)`` is the UTC day in any session time
zone.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from analytics.domain.projection import Projection
from analytics.ports import Row, Warehouse, WarehouseUnavailable
from analytics.schema import FACT_TABLES, TABLES, TABLES_BY_NAME, TYPES
from analytics.views import VIEW_KEYS, load_views

SCHEMA = "coursebridge"
FILE_NAME = "analytics.duckdb"
_PARAM = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
_LOCK_MARKERS = ("lock", "Conflicting", "different configuration")


class DuckDBWarehouse(Warehouse):
    def __init__(self, path: Path | str, *, lock_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    # --- connections -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only and not self.path.exists():
            raise WarehouseUnavailable(f"{self.path} does not exist yet (the worker creates it)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                connection = duckdb.connect(str(self.path), read_only=read_only)
                break
            except (duckdb.IOException, duckdb.ConnectionException) as error:
                if not any(marker in str(error) for marker in _LOCK_MARKERS):
                    raise WarehouseUnavailable(str(error)) from error
                if time.monotonic() > deadline:
                    raise WarehouseUnavailable(f"{self.path} stayed locked: {error}") from error
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        try:
            yield connection
        finally:
            connection.close()

    # --- schema ------------------------------------------------------------------------------------

    def migrate(self) -> None:
        with self.connect() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            for table in TABLES:
                con.execute(table.duckdb_ddl(SCHEMA))
                existing = {
                    row[0]
                    for row in con.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = ? AND table_name = ?",
                        [SCHEMA, table.name],
                    ).fetchall()
                }
                for column in table.columns:
                    if column.name not in existing:  # additive migration: new nullable columns
                        con.execute(
                            f"ALTER TABLE {SCHEMA}.{table.name} "
                            f"ADD COLUMN {column.name} {TYPES[column.type][1]}"
                        )
            for view in load_views():
                con.execute(f"CREATE OR REPLACE VIEW {SCHEMA}.{view.name} AS\n{view.duckdb(SCHEMA)}")

    # --- writes ------------------------------------------------------------------------------------

    def write(self, projection: Projection) -> int:
        projection = projection.deduplicated()
        if projection.is_empty():
            return 0
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                new = 0
                for name, rows in projection.rows.items():
                    if not rows:
                        continue
                    table = TABLES_BY_NAME[name]
                    prepared = [_prepare(row, table.column_names) for row in rows]
                    result = con.execute(
                        f"INSERT INTO {SCHEMA}.{name} BY NAME "
                        f"SELECT UNNEST($rows, recursive := true) ON CONFLICT DO NOTHING",
                        {"rows": prepared},
                    ).fetchone()
                    if name == "events":
                        new = int(result[0]) if result else 0
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        return new

    def load_rates(self, rows: list[Row]) -> int:
        if not rows:
            return 0
        table = TABLES_BY_NAME["fx_rates"]
        with self.connect() as con:
            con.execute(
                f"INSERT INTO {SCHEMA}.fx_rates BY NAME SELECT UNNEST($rows, recursive := true)",
                {"rows": [_prepare(row, table.column_names) for row in rows]},
            )
        return len(rows)

    def truncate_facts(self) -> None:
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            for table in FACT_TABLES:
                con.execute(f"DELETE FROM {SCHEMA}.{table.name}")
            con.execute("COMMIT")

    # --- reads -------------------------------------------------------------------------------------

    def relation(self, name: str) -> str:
        return f"{SCHEMA}.{name}"

    def query_view(self, view: str, where: str = "", params: dict[str, Any] | None = None) -> list[Row]:
        if not view.isidentifier():
            raise ValueError(f"bad view name {view!r}")
        condition = _PARAM.sub(r"$\1", where)
        sql = f"SELECT * FROM {SCHEMA}.{view}" + (f" WHERE {condition}" if where else "") + _order(view)
        return self.query(sql, params)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        with self.connect(read_only=True) as con:
            cursor = con.execute(sql, params or {})
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def iter_raw_events(self, batch_size: int = 10_000) -> Iterator[list[Row]]:
        last: tuple[datetime, str] | None = None
        while True:
            where = "" if last is None else "WHERE time > $t OR (time = $t AND event_id > $id)"
            params = {} if last is None else {"t": last[0], "id": last[1]}
            with self.connect(read_only=True) as con:
                cursor = con.execute(
                    f"SELECT event_id, type, time, CAST(payload AS VARCHAR) FROM {SCHEMA}.events {where} "
                    f"ORDER BY time, event_id LIMIT {int(batch_size)}",
                    params,
                )
                batch = [
                    {
                        "event_id": r[0],
                        "type": r[1],
                        "time": r[2].replace(tzinfo=UTC),
                        "payload": json.loads(r[3] or "{}"),
                    }
                    for r in cursor.fetchall()
                ]
            if not batch:
                return
            yield batch
            last = (batch[-1]["time"], batch[-1]["event_id"])

    def count(self, table: str) -> int:
        if table not in TABLES_BY_NAME:
            raise ValueError(f"unknown table {table!r}")
        # Events, as on BigQuery: a learning event has one row per attributed purchase.
        keyed = TABLES_BY_NAME[table].primary_key
        what = "count(DISTINCT event_id)" if keyed and keyed != ("event_id",) else "count(*)"
        with self.connect(read_only=True) as con:
            return int(con.execute(f"SELECT {what} FROM {SCHEMA}.{table}").fetchone()[0])

    def check(self) -> None:
        self.count("events")


def _prepare(row: Row, columns: tuple[str, ...]) -> Row:
    prepared = {}
    for column in columns:
        value = row.get(column)
        if column == "payload" and value is not None:
            value = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        elif isinstance(value, Decimal):
            value = str(value)  # a string casts exactly into DECIMAL(38, 9); mixed Decimals would not unify
        elif isinstance(value, datetime):
            # TIMESTAMP columns hold naive UTC (BigQuery's TIMESTAMP is UTC too): DATE() gives the UTC day.
            value = (
                value.astimezone(UTC).replace(tzinfo=None).isoformat() if value.tzinfo else value.isoformat()
            )
        elif isinstance(value, date):
            value = value.isoformat()
        prepared[column] = value
    return prepared


def _order(view: str) -> str:
    keys = VIEW_KEYS.get(view)
    return f" ORDER BY {', '.join(keys)}" if keys else ""
