# ruff: noqa: S608 - identifiers come from analytics.schema/views or are checked; values are parameters
"""BigQuery warehouse (google-cloud-bigquery): dataset ``BIGQUERY_DATASET`` (default ``coursebridge``).

Writes are appends, never DML: each batch becomes one **load job** per table (newline-delimited JSON,
``WRITE_APPEND``). Load jobs bill no bytes and take no DML slot, where a ``MERGE`` per table per batch
billed at least 10 MB each and at most two mutating DML jobs run per table at once. Duplicates
(redeliveries, a batch loaded again after an unknown outcome) are allowed in the raw tables and removed
by the views (``payment_states`` folds payments; ``*_unique`` reads of the other tables). A load job's
id is derived from the table and the batch's event ids: re-submitting the same batch after a timeout
finds the first job (409) and waits for it instead of loading twice. Load jobs are limited to 1,500 per
table per day, so the worker batches for longer on BigQuery (``ANALYTICS_BATCH_WAIT_SECONDS``).

``migrate`` creates only what is missing and changes only what differs: tables are looked up first and
created with ``exists_ok``; new columns are added with ``ADD COLUMN IF NOT EXISTS``; each view carries
the SHA-256 of its SQL in its description and is created or updated only when that differs. Replicas
starting at once therefore agree (every step is idempotent) and a normal start runs no query job.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from google.api_core.exceptions import GoogleAPIError, NotFound
from google.cloud import bigquery

from analytics.domain.projection import Projection
from analytics.ports import Row, Warehouse, WarehouseUnavailable
from analytics.schema import EVENT_TABLES, FACT_TABLES, TABLES, TABLES_BY_NAME, TYPES, Table
from analytics.views import VIEW_KEYS, View, load_views

VIEW_HASH_PREFIX = "coursebridge-sql-sha256:"


def _client(project: str, location: str | None) -> bigquery.Client:
    """The BigQuery client; with ``BIGQUERY_EMULATOR_HOST`` (host:port, local clusters) the emulator.

    Like the Pub/Sub and Firestore emulator variables: no Google credentials are looked up then, so a
    local cluster without any needs none.
    """
    emulator = os.environ.get("BIGQUERY_EMULATOR_HOST", "").strip()
    if not emulator:
        return bigquery.Client(project=project, location=location)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return bigquery.Client(
        project=project,
        location=location,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=f"http://{emulator}"),
    )


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
        self.client = client or _client(project, location)
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
            self.client.create_dataset(dataset, exists_ok=True, retry=self._retry)
        for table in TABLES:
            try:  # look first: IF NOT EXISTS is not honoured by every emulator
                self.client.get_table(f"{self.qualified}.{table.name}")
            except NotFound:
                try:
                    self._run(table.bigquery_ddl(self.qualified))
                except WarehouseUnavailable:
                    self.client.get_table(f"{self.qualified}.{table.name}")  # another replica made it
            self._add_missing_columns(table)
        for view in load_views():
            self._ensure_view(view)

    def _ensure_view(self, view: View) -> str:
        """Create or update one view only when its SQL changed; returns what it did."""
        sql = view.bigquery(self.qualified)
        wanted = VIEW_HASH_PREFIX + hashlib.sha256(sql.encode("utf-8")).hexdigest()
        name = f"{self.qualified}.{view.name}"
        try:
            existing = self.client.get_table(name)
        except NotFound:
            table = bigquery.Table(name)
            table.view_query = sql
            table.description = wanted
            try:
                self.client.create_table(table, retry=self._retry)
                return "created"
            except GoogleAPIError:  # another replica created it a moment ago (409; the emulator: 500)
                existing = self.client.get_table(name)
        if existing.description == wanted:
            return "unchanged"
        existing.view_query = sql
        existing.description = wanted
        self.client.update_table(existing, ["view_query", "description"], retry=self._retry)
        return "updated"

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
        """Append the batch: one load job per table with rows; returns how many events it carried.

        Whether an event was new is not known without reading the table; the views deduplicate.
        """
        projection = projection.deduplicated()
        if projection.is_empty():
            return 0
        # Facts first, the raw log last: an event in ``events`` always has its facts (rebuild aside).
        for name in ("payments", "enrollments", "subscriptions", "catalogue", "learning", "events"):
            rows = projection.rows[name]
            if rows:
                self._append(TABLES_BY_NAME[name], rows)
        return projection.count()

    def load_rates(self, rows: list[Row]) -> int:
        if rows:
            self._append(TABLES_BY_NAME["fx_rates"], rows)
        return len(rows)

    def _append(self, table: Table, rows: list[Row]) -> None:
        body = "\n".join(
            json.dumps(_ndjson_row(row), separators=(",", ":"), default=str) for row in rows
        ).encode("utf-8")
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            schema=[
                bigquery.SchemaField(c.name, TYPES[c.type][0], mode="REQUIRED" if c.required else "NULLABLE")
                for c in table.columns
            ],
        )
        job_id = _load_job_id(table.name, rows)
        try:
            job = self.client.load_table_from_file(
                io.BytesIO(body),
                f"{self.qualified}.{table.name}",
                num_retries=1,  # a failed batch is redelivered whole; no long retry inside
                job_id=job_id,
                job_config=config,
                location=self.location,
                timeout=self.job_timeout,
            )
        except GoogleAPIError as error:
            # In doubt: this very batch may have been submitted before (BigQuery answers 409, the
            # emulator 500). If that job exists, wait for it instead of loading the rows twice.
            try:
                job = self.client.get_job(job_id, location=self.location)
            except GoogleAPIError:
                raise WarehouseUnavailable(f"BigQuery load into {table.name}: {error}") from error
        try:
            job.result(timeout=self.job_timeout)
        except GoogleAPIError as error:
            raise WarehouseUnavailable(f"BigQuery load into {table.name}: {error}") from error

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
        sql = (  # the raw log may hold an event twice (appends): the first row of each id
            f"SELECT event_id, type, time, TO_JSON_STRING(payload) AS payload FROM ("
            f"SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY recorded_at) AS rn "
            f"FROM `{self.qualified}.events`) WHERE rn = 1 ORDER BY time, event_id"
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
        what = "COUNT(DISTINCT event_id)" if TABLES_BY_NAME[table] in EVENT_TABLES else "COUNT(*)"
        return int(next(iter(self._run(f"SELECT {what} AS n FROM `{self.qualified}.{table}`")))["n"])

    def check(self) -> None:
        try:
            self.client.get_dataset(self.qualified)
        except GoogleAPIError as error:
            raise WarehouseUnavailable(str(error)) from error

    def close(self) -> None:
        self.client.close()


def _load_job_id(table: str, rows: list[Row]) -> str:
    """The same batch gives the same job id, so a resubmission is recognised (409) and not loaded twice."""
    digest = hashlib.sha256("\n".join(sorted(str(r.get("event_id", r)) for r in rows)).encode("utf-8"))
    return f"coursebridge_{table}_{digest.hexdigest()[:40]}"


def _ndjson_row(row: Row) -> Row:
    """A row as a load job reads it: the payload as a JSON object, exact decimals as strings."""
    out = {}
    for key, value in row.items():
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime | date):
            value = value.isoformat()
        out[key] = value
    return out


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
