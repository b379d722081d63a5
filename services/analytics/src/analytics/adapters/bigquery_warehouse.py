# ruff: noqa: S608 - identifiers come from analytics.schema/views or are checked; values are parameters
"""BigQuery warehouse (google-cloud-bigquery): dataset ``BIGQUERY_DATASET`` (default ``coursebridge``).

Tables are partitioned by day and clustered (``analytics.schema``). Writes are idempotent by design, not
by insertId (best effort for about a minute only): each batch is a ``MERGE ... WHEN NOT MATCHED THEN
INSERT`` keyed on ``event_id`` per table, with the batch passed as a JSON query parameter and the target
restricted to the batch's days so only those partitions are scanned. A failed batch raises, the messages
are not acked, the redelivered batch merges again and adds only what is missing. The revenue views are
the SQL files of ``sql/views`` as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from google.api_core.exceptions import GoogleAPIError, NotFound
from google.cloud import bigquery

from analytics.domain.projection import Projection
from analytics.ports import Row, Warehouse, WarehouseUnavailable
from analytics.schema import FACT_TABLES, TABLES, TABLES_BY_NAME, TYPES, Table
from analytics.views import VIEW_KEYS, load_views


class BigQueryWarehouse(Warehouse):
    def __init__(
        self,
        project: str,
        dataset: str = "coursebridge",
        *,
        location: str | None = None,
        client: bigquery.Client | None = None,
        job_timeout: float = 120.0,
    ) -> None:
        self.project = project
        self.dataset = dataset
        self.location = location
        self.client = client or bigquery.Client(project=project, location=location)
        self.job_timeout = job_timeout
        self._retry = bigquery.DEFAULT_RETRY.with_deadline(job_timeout)

    @property
    def qualified(self) -> str:
        return f"{self.project}.{self.dataset}"

    def _run(self, sql: str, params: list[Any] | None = None) -> bigquery.table.RowIterator:
        config = bigquery.QueryJobConfig(query_parameters=params or [])
        try:
            return self.client.query(sql, job_config=config, retry=self._retry).result(
                timeout=self.job_timeout, retry=self._retry
            )
        except GoogleAPIError as error:
            raise WarehouseUnavailable(f"BigQuery: {error}") from error

    # --- schema ------------------------------------------------------------------------------------

    def migrate(self) -> None:
        dataset = bigquery.Dataset(self.qualified)
        if self.location:
            dataset.location = self.location
        try:
            self.client.get_dataset(self.qualified)
        except NotFound:
            self.client.create_dataset(dataset, exists_ok=True)
        for table in TABLES:
            try:  # look first: IF NOT EXISTS is not honoured by every emulator
                self.client.get_table(f"{self.qualified}.{table.name}")
            except NotFound:
                self._run(table.bigquery_ddl(self.qualified))
            self._add_missing_columns(table)
        for view in load_views():
            self._run(
                f"CREATE OR REPLACE VIEW `{self.qualified}.{view.name}` AS\n{view.bigquery(self.qualified)}"
            )

    def _add_missing_columns(self, table: Table) -> None:
        try:
            existing = {
                field.name for field in self.client.get_table(f"{self.qualified}.{table.name}").schema
            }
        except NotFound:
            return
        for column in table.columns:
            if column.name not in existing:
                self._run(
                    f"ALTER TABLE `{self.qualified}.{table.name}` "
                    f"ADD COLUMN IF NOT EXISTS {column.name} {TYPES[column.type][0]}"
                )

    # --- writes ------------------------------------------------------------------------------------

    def write(self, projection: Projection) -> int:
        projection = projection.deduplicated()
        if projection.is_empty():
            return 0
        new = 0
        # Facts first, the raw log last: an event in ``events`` always has its facts (rebuild aside).
        for name in ("payments", "enrollments", "subscriptions", "catalogue", "events"):
            rows = projection.rows[name]
            if rows:
                inserted = self._merge(TABLES_BY_NAME[name], rows)
                if name == "events":
                    new = inserted
        return new

    def _merge(self, table: Table, rows: list[Row]) -> int:
        days = [_day(row[table.partition_by]) for row in rows]
        selects = ", ".join(_json_extract(column.name, column.type) for column in table.columns)
        names = ", ".join(column.name for column in table.columns)
        values = ", ".join("s." + column.name for column in table.columns)
        sql = (
            f"MERGE `{self.qualified}.{table.name}` AS t\n"
            f"USING (SELECT {selects} FROM UNNEST(JSON_QUERY_ARRAY(@rows)) AS r) AS s\n"
            f"ON t.event_id = s.event_id AND DATE(t.{table.partition_by}) BETWEEN @first_day AND @last_day\n"
            f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        )
        params = [
            bigquery.ScalarQueryParameter("rows", "STRING", json.dumps([_jsonable(r) for r in rows])),
            bigquery.ScalarQueryParameter("first_day", "DATE", min(days)),
            bigquery.ScalarQueryParameter("last_day", "DATE", max(days)),
        ]
        config = bigquery.QueryJobConfig(query_parameters=params)
        try:
            job = self.client.query(sql, job_config=config, retry=self._retry)
            job.result(timeout=self.job_timeout, retry=self._retry)
        except GoogleAPIError as error:
            raise WarehouseUnavailable(f"BigQuery MERGE into {table.name}: {error}") from error
        affected = job.num_dml_affected_rows
        return int(affected) if affected is not None else len(rows)

    def truncate_facts(self) -> None:
        for table in FACT_TABLES:
            self._run(f"TRUNCATE TABLE `{self.qualified}.{table.name}`")

    # --- reads -------------------------------------------------------------------------------------

    def relation(self, name: str) -> str:
        return f"`{self.qualified}.{name}`"

    def query_view(self, view: str, where: str = "", params: dict[str, Any] | None = None) -> list[Row]:
        if not view.isidentifier():
            raise ValueError(f"bad view name {view!r}")
        sql = f"SELECT * FROM `{self.qualified}.{view}`" + (f" WHERE {where}" if where else "") + _order(view)
        return self.query(sql, params)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        qp = [_parameter(name, value) for name, value in (params or {}).items()]
        return [dict(row.items()) for row in self._run(sql, qp)]

    def iter_raw_events(self, batch_size: int = 10_000) -> Iterator[list[Row]]:
        sql = (
            f"SELECT event_id, type, time, TO_JSON_STRING(payload) AS payload "
            f"FROM `{self.qualified}.events` ORDER BY time, event_id"
        )
        batch: list[Row] = []
        for row in self._run(sql):
            payload = json.loads(row["payload"]) if row["payload"] else {}
            if isinstance(payload, str):  # a JSON value serialised once more
                payload = json.loads(payload)
            batch.append(
                {"event_id": row["event_id"], "type": row["type"], "time": row["time"], "payload": payload}
            )
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def count(self, table: str) -> int:
        if table not in TABLES_BY_NAME:
            raise ValueError(f"unknown table {table!r}")
        return int(next(iter(self._run(f"SELECT COUNT(*) AS n FROM `{self.qualified}.{table}`")))["n"])

    def check(self) -> None:
        try:
            self.client.get_dataset(self.qualified)
        except GoogleAPIError as error:
            raise WarehouseUnavailable(str(error)) from error

    def close(self) -> None:
        self.client.close()


def _json_extract(name: str, type_: str) -> str:
    text = f"JSON_VALUE(r, '$.{name}')"
    if type_ == "json":
        return f"PARSE_JSON(JSON_VALUE(r, '$.{name}')) AS {name}"
    if type_ == "string":
        return f"{text} AS {name}"
    return f"CAST({text} AS {TYPES[type_][0]}) AS {name}"


def _jsonable(row: Row) -> Row:
    out = {}
    for key, value in row.items():
        if key == "payload" and value is not None:
            value = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        elif isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime | date):
            value = value.isoformat()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = value
    return out


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()


def _parameter(name: str, value: Any) -> bigquery.ScalarQueryParameter:
    if isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, Decimal):
        kind = "NUMERIC"
    elif isinstance(value, datetime):
        kind = "TIMESTAMP"
    elif isinstance(value, date):
        kind = "DATE"
    else:
        kind = "STRING"
    return bigquery.ScalarQueryParameter(name, kind, value)


def _order(view: str) -> str:
    keys = VIEW_KEYS.get(view)
    return f" ORDER BY {', '.join(keys)}" if keys else ""
