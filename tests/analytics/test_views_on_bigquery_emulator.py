"""The revenue views as BigQuery SQL on a BigQuery emulator equal the transpiled views on DuckDB.

The same synthetic events (with redeliveries) go through the normal projection into the embedded
(DuckDB) warehouse, and, deduplicated by event id as the warehouses do, into tables of
goccy/bigquery-emulator created from the same schema DDL (``analytics.schema``) by streaming inserts
(the adapter's ``MERGE ... UNNEST(JSON_QUERY_ARRAY(@rows))`` write does not finish on the emulator). The
views are the files of ``sql/views`` in BigQuery dialect, exactly as deployed, not transpiled. Every
view is compared row by row after normalising types (exact decimals to 9 places, floats to 9
places, dates and timestamps to ISO strings).

Skipped without the emulator binary (``tools/install_bigquery_emulator.sh``), failed on CI.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from bigquery_emulator import BigQueryEmulator, json_row, require_binary, run_query

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.domain.projection import Projection, project
from analytics.schema import TABLES
from analytics.service_layer.projector import project_events
from analytics.synthetic import generate_events
from analytics.views import VIEW_KEYS, VIEW_ORDER, load_views

pytestmark = pytest.mark.emulator

KEY = b"bq-emulator-equivalence-key"
EVENTS = 700
REDELIVERED = 70
INSERT_BATCH = 500
NINE_PLACES = Decimal("0.000000001")


@pytest.fixture(scope="module")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    emulator = BigQueryEmulator(require_binary(), tmp_path_factory.mktemp("bigquery-emulator"))
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _normalise(value: Any) -> Any:
    if isinstance(value, Decimal | float):  # rates are NUMERIC on BigQuery, may be DOUBLE on DuckDB
        return f"{Decimal(str(value)).quantize(NINE_PLACES):f}"
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # BigQuery answers aware UTC; DuckDB keeps naive UTC
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _rows(rows: list[dict[str, Any]], view: str) -> list[tuple[tuple[str, Any], ...]]:
    normalised = [tuple(sorted((k, _normalise(v)) for k, v in row.items())) for row in rows]
    keys = VIEW_KEYS[view]
    return sorted(normalised, key=lambda row: tuple(str(dict(row)[k]) for k in keys))


def test_bigquery_views_on_the_emulator_equal_duckdb(bigquery_emulator: BigQueryEmulator, tmp_path: Path):
    events = list(generate_events(EVENTS, seed=17))
    events += events[:REDELIVERED]

    # DuckDB: the normal projection path, as in services/analytics/tests/test_views.py.
    duck = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    duck.migrate()
    project_events(duck, events, KEY)

    # Emulator: the same projected rows, deduplicated by event id as both adapters do.
    batch = Projection()
    for event in events:
        batch.extend(project(event, KEY))
    rows_by_table = batch.deduplicated().rows

    client = bigquery_emulator.client()
    dataset = f"{bigquery_emulator.project}.cb_{uuid.uuid4().hex[:8]}"
    try:
        client.create_dataset(dataset, timeout=30)
        for table in TABLES:
            run_query(client, table.bigquery_ddl(dataset))
            rows = [json_row(row) for row in rows_by_table[table.name]]
            for start in range(0, len(rows), INSERT_BATCH):
                errors = client.insert_rows_json(
                    f"{dataset}.{table.name}", rows[start : start + INSERT_BATCH], timeout=30
                )
                assert not errors, errors[:3]
            count = run_query(client, f"SELECT COUNT(*) AS n FROM `{dataset}.{table.name}`")[0]["n"]
            assert count == duck.count(table.name) == len(rows), table.name
        assert duck.count("payments") > 300

        for view in load_views():
            run_query(client, f"CREATE VIEW `{dataset}.{view.name}` AS\n{view.bigquery(dataset)}")

        compared = {}
        for name in VIEW_ORDER:
            on_emulator = _rows(run_query(client, f"SELECT * FROM `{dataset}.{name}`"), name)
            on_duckdb = _rows(duck.query_view(name), name)
            assert on_emulator, name
            assert on_emulator == on_duckdb, name
            compared[name] = len(on_duckdb)
        # Not vacuous: revenue over several months and currencies, refunds, subscribers.
        assert compared["revenue_daily_totals"] > 50 and compared["mrr_monthly"] >= 4
        totals = duck.query_view("revenue_daily_totals")
        assert {r["currency"] for r in totals} == {"BRL", "USD"}
        assert sum(r["refunds"] for r in totals) > 0 and sum(r["chargebacks"] for r in totals) > 0
    finally:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True, timeout=30)
        client.close()
