"""The embedded warehouse stores ``purchase_charges`` as a table refreshed per batch: it must always hold
exactly the rows the view's SQL computes from ``payments`` (whatever the batches, redeliveries and order),
survive a file from before it was stored, refill itself when its SQL changes, and empty with a rebuild.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.adapters.duckdb_warehouse import SCHEMA, DuckDBWarehouse
from analytics.service_layer.projector import project_events, rebuild
from analytics.synthetic import generate_events
from analytics.views import VIEW_KEYS, inlined, load_views, transpile_to_duckdb

KEY = b"stored-charges-key"
EVENTS = list(generate_events(900, seed=23, days=120))


def _stored(warehouse: DuckDBWarehouse) -> list[dict[str, Any]]:
    return warehouse.query_view("purchase_charges")


def _computed(warehouse: DuckDBWarehouse) -> list[dict[str, Any]]:
    """The view's SQL evaluated now over the raw tables (nothing stored is read)."""
    body = transpile_to_duckdb(inlined("purchase_charges", lambda table: f"{SCHEMA}.{table}"))
    keys = ", ".join(VIEW_KEYS["purchase_charges"])
    return warehouse.query(f"SELECT * FROM (\n{body}\n) AS v ORDER BY {keys}")


def _kind(warehouse: DuckDBWarehouse) -> str:
    rows = warehouse.query(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = $s AND table_name = $n",
        {"s": SCHEMA, "n": "purchase_charges"},
    )
    return rows[0]["table_type"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), redelivered=st.integers(0, 200))
def test_stored_rows_equal_the_view_sql_after_any_batches(tmp_path_factory, seed: int, redelivered: int):
    rng = random.Random(seed)
    stream = EVENTS + rng.sample(EVENTS, redelivered)
    rng.shuffle(stream)
    warehouse = DuckDBWarehouse(tmp_path_factory.mktemp("stored") / "analytics.duckdb")
    warehouse.migrate()
    start = 0
    while start < len(stream):
        size = rng.choice((1, 7, 50, 333))
        project_events(warehouse, stream[start : start + size], KEY)
        start += size
    stored = _stored(warehouse)
    assert len(stored) > 400  # not vacuous: hundreds of charges, reversals among them
    assert any(row["reversal"] == "chargeback" for row in stored)
    assert stored == _computed(warehouse)


def test_a_file_from_before_gets_the_table_and_a_changed_sql_refills_it(tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    warehouse.migrate()
    project_events(warehouse, EVENTS, KEY)
    expected = _computed(warehouse)
    assert _kind(warehouse) == "BASE TABLE" and _stored(warehouse) == expected

    # A file written before purchase_charges was stored: the name is a view.
    view = next(v for v in load_views() if v.name == "purchase_charges")
    with warehouse.connect() as con:
        con.execute(f"DROP TABLE {SCHEMA}.purchase_charges")
        con.execute(f"CREATE VIEW {SCHEMA}.purchase_charges AS\n{view.duckdb(SCHEMA)}")
    warehouse.migrate()
    assert _kind(warehouse) == "BASE TABLE" and _stored(warehouse) == expected

    # Stored under other SQL (another version of the view): migrate recomputes every row.
    with warehouse.connect() as con:
        con.execute(f"DELETE FROM {SCHEMA}.purchase_charges WHERE recurrence_number = 0")
        con.execute(f"COMMENT ON TABLE {SCHEMA}.purchase_charges IS 'coursebridge-sql-sha256:older'")
    warehouse.migrate()
    assert _stored(warehouse) == expected

    # Same SQL: a normal start leaves the rows alone (no refill).
    with warehouse.connect() as con:
        con.execute(f"DELETE FROM {SCHEMA}.purchase_charges WHERE recurrence_number = 0")
    warehouse.migrate()
    assert len(_stored(warehouse)) < len(expected)


def test_a_rebuild_empties_and_refills_the_stored_rows(tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    warehouse.migrate()
    project_events(warehouse, EVENTS, KEY)
    expected = _computed(warehouse)
    warehouse.truncate_facts()
    assert _stored(warehouse) == [] and _computed(warehouse) == []
    rebuild(warehouse, KEY, batch_size=128)
    assert _stored(warehouse) == expected
