# ruff: noqa: S608 - identifiers come from analytics.schema/views or are checked; values are parameters
"""Embedded warehouse: one DuckDB file under ``COURSEBRIDGE_DATA_DIR`` (``analytics.duckdb``).

DuckDB lets one process write a file, or several processes read it, never both at once. So no process
keeps the file open: the worker opens it read-write for one batch (a few milliseconds) and closes it,
the API opens it read-only for one request. Either side retries for a short while when the other holds
the lock. The revenue views are the BigQuery SQL of ``sql/views`` transpiled to DuckDB. Timestamps are
stored as naive UTC ``TIMESTAMP`` (like BigQuery's), so ``DATE(ts)`` is the UTC day in any session time
zone.

``purchase_charges`` is *stored* here: a table with exactly the view's rows, kept current by ``write``
in the batch's own transaction (the charges of the transactions the batch touched are recomputed from
``payments`` with the view's own SQL). Every revenue view reads it instead of re-ranking the whole
payment history on each request; BigQuery keeps it a view.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
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
from analytics.views import VIEW_KEYS, inlined, load_views, transpile_to_duckdb

SCHEMA = "coursebridge"
FILE_NAME = "analytics.duckdb"
_PARAM = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
_LOCK_MARKERS = ("lock", "Conflicting", "different configuration")
# Views stored as tables, with the column that partitions them: a row depends only on the payments of
# its own transaction, so a batch refreshes just the transactions it carried.
STORED_VIEWS: dict[str, str] = {"purchase_charges": "transaction"}
_STORED_HASH_PREFIX = "coursebridge-sql-sha256:"
_BATCH_KEYS = "_batch_transactions"


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
                if view.name in STORED_VIEWS:
                    _ensure_stored(con, view.name)
                else:
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
                transactions = sorted(
                    {r["transaction"] for r in projection.rows["payments"] if r.get("transaction")}
                )
                if transactions:
                    _refresh_stored(con, transactions)
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
            for name in STORED_VIEWS:
                con.execute(f"DELETE FROM {SCHEMA}.{name}")
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


@functools.cache
def _stored_sql(name: str, *, batch_only: bool) -> str:
    """A stored view's SQL on DuckDB; ``batch_only`` reads only the payments of the batch's transactions."""
    key = STORED_VIEWS[name]

    def table(table_name: str) -> str:
        if batch_only and table_name == "payments":
            return f"(SELECT * FROM {SCHEMA}.payments WHERE {key} IN (SELECT {key} FROM {_BATCH_KEYS}))"
        return f"{SCHEMA}.{table_name}"

    return transpile_to_duckdb(inlined(name, table))


def _ensure_stored(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Create (or, when its SQL changed, recreate and refill) the table holding a stored view's rows."""
    sql = _stored_sql(name, batch_only=False)
    wanted = _STORED_HASH_PREFIX + hashlib.sha256(sql.encode("utf-8")).hexdigest()
    found = con.execute(
        "SELECT 'table', comment FROM duckdb_tables() WHERE schema_name = ? AND table_name = ? "
        "UNION ALL SELECT 'view', NULL FROM duckdb_views() WHERE schema_name = ? AND view_name = ?",
        [SCHEMA, name, SCHEMA, name],
    ).fetchall()
    if found and found[0] == ("table", wanted):
        return
    if found and found[0][0] == "view":  # a file from before the view was stored
        con.execute(f"DROP VIEW {SCHEMA}.{name}")
    con.execute(f"CREATE OR REPLACE TABLE {SCHEMA}.{name} AS\n{sql}")
    con.execute(f"COMMENT ON TABLE {SCHEMA}.{name} IS '{wanted}'")


def _refresh_stored(con: duckdb.DuckDBPyConnection, transactions: list[str]) -> None:
    """Recompute the stored views' rows of these transactions (inside the batch's transaction)."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_BATCH_KEYS} AS SELECT UNNEST($keys) AS transaction",
        {"keys": transactions},
    )
    try:
        for name, key in STORED_VIEWS.items():
            con.execute(f"DELETE FROM {SCHEMA}.{name} WHERE {key} IN (SELECT {key} FROM {_BATCH_KEYS})")
            fresh = _stored_sql(name, batch_only=True)
            con.execute(f"INSERT INTO {SCHEMA}.{name} BY NAME SELECT * FROM (\n{fresh}\n)")
    finally:
        con.execute(f"DROP TABLE IF EXISTS {_BATCH_KEYS}")


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
