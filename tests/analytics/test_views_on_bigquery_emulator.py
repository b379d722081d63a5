"""The revenue views as BigQuery SQL on a BigQuery emulator equal the transpiled views on DuckDB, and the
BigQuery adapter's own write path (load jobs, appends only) and migrations work there.

The same synthetic events go through the normal projection into the embedded (DuckDB) warehouse and,
through ``BigQueryWarehouse.write`` (one load job per table per batch), into goccy/bigquery-emulator;
redeliveries are written again as a second batch, so the raw BigQuery tables really hold duplicates
and the views must remove them. The views are the files of ``sql/views`` in BigQuery dialect, created
by the adapter's ``migrate``, not transpiled. Every view is compared row by row after normalising
types (exact decimals to 9 places, floats to 9 places, dates and timestamps to ISO strings). The
learning views have a test of their own with TalentLMS activity, on a fresh emulator: one emulator
process's memory does not last for every view over the larger data set (it panics).

Skipped without the emulator binary (``tools/install_bigquery_emulator.sh``), failed on CI.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from bigquery_emulator import BigQueryEmulator, require_binary, run_query

from analytics.adapters.bigquery_warehouse import BigQueryWarehouse
from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.schema import TABLES
from analytics.service_layer.projector import project_events
from analytics.synthetic import generate_events, learning_event, learning_events_for
from analytics.views import LEARNING_VIEWS, VIEW_KEYS, VIEW_ORDER, View, load_views

pytestmark = pytest.mark.emulator

KEY = b"bq-emulator-equivalence-key"
EVENTS = 700
REDELIVERED = 70
LEARNING_PAYMENTS = 300
NINE_PLACES = Decimal("0.000000001")


@pytest.fixture
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    """One emulator per test: after the views' long run the emulator process has been seen to die,
    leaving the next test's client retrying until the timeout. It starts in about a second."""
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


def _rates() -> list[dict[str, Any]]:
    loaded = datetime(2025, 7, 1, tzinfo=UTC)
    rows = []
    for day in range(1, 29):
        for currency, rate in (("USD", "5.10"), ("BRL", "0.18")):
            reporting = "BRL" if currency == "USD" else "EUR"
            rows.append(
                {
                    "day": date(2025, 2, day),
                    "currency": currency,
                    "reporting_currency": reporting,
                    "rate": Decimal(rate),
                    "source": "test.csv",
                    "loaded_at": loaded,
                }
            )
    return rows


def _learning(payments: list) -> list:
    """TalentLMS activity of the buyers, a few of its entries read again (same activity, new event id)
    and one activity attributed to two purchases (two rows of one event)."""
    learning = learning_events_for(payments, seed=18)
    reread = [
        learning_event(
            e.data["activity"],
            activity_id=e.data["activity_id"],
            at=datetime.fromisoformat(e.data["occurred_at"].replace("Z", "+00:00")),
            lms_user_id=e.data["lms_user_id"],
            purchases=[(p["transaction"], p["product_id"]) for p in e.data["purchases"]],
            course_id=e.data["course_id"],
            observed=e.time + timedelta(hours=3),
        )
        for e in learning[::25]
    ]
    first, second = [e for e in payments if e.data.get("kind") == "purchase_approved"][:2]
    both = learning_event(
        "signed_in",
        activity_id="la-two-purchases",
        at=datetime(2025, 7, 1, 12, tzinfo=UTC),
        lms_user_id="4242",
        purchases=[(e.data["transaction"], e.data["product"]["id"]) for e in (first, second)],
    )
    return [*learning, *reread, both]


def test_bigquery_views_on_the_emulator_equal_duckdb(bigquery_emulator: BigQueryEmulator, tmp_path: Path):
    events = list(generate_events(EVENTS, seed=17))
    redelivered = events[:REDELIVERED]

    # DuckDB: the normal projection path, as in services/analytics/tests/test_views.py.
    duck = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    duck.migrate()
    project_events(duck, events + redelivered, KEY)
    duck.load_rates(_rates())

    client = bigquery_emulator.client()
    dataset = f"cb_{uuid.uuid4().hex[:8]}"
    bq = BigQueryWarehouse(bigquery_emulator.project, dataset, client=client, job_timeout=60)
    try:
        bq.migrate()
        # The adapter's write path: appends (load jobs); the redelivered events land a second time.
        project_events(bq, events, KEY)
        project_events(bq, redelivered, KEY)
        bq.load_rates(_rates())
        raw = run_query(client, f"SELECT COUNT(*) AS n FROM `{bq.qualified}.events`")[0]["n"]
        assert raw == len(events) + REDELIVERED  # duplicates really are in the raw table
        for table in TABLES:
            assert bq.count(table.name) == duck.count(table.name), table.name
        assert duck.count("payments") > 300

        compared = {}
        for name in VIEW_ORDER:
            if name in LEARNING_VIEWS:
                continue  # their own test below: one emulator's memory does not last for all views
            on_emulator = _rows(run_query(client, f"SELECT * FROM `{bq.qualified}.{name}`"), name)
            on_duckdb = _rows(duck.query_view(name), name)
            assert on_emulator, name
            assert on_emulator == on_duckdb, name
            compared[name] = len(on_duckdb)
        # Not vacuous: revenue over several months and currencies, reversals, subscribers, conversions.
        assert compared["revenue_daily_totals"] > 50 and compared["mrr_monthly"] >= 4
        totals = duck.query_view("revenue_daily_totals")
        assert {r["currency"] for r in totals} == {"BRL", "USD"}
        assert sum(r["refunds"] for r in totals) > 0 and sum(r["chargebacks"] for r in totals) > 0
        assert sum(r["completed"] for r in totals) > 0
        converted = duck.query_view(
            "revenue_daily_converted", "rate IS NOT NULL AND currency <> reporting_currency"
        )
        assert converted
    finally:
        client.delete_dataset(
            f"{bigquery_emulator.project}.{dataset}", delete_contents=True, not_found_ok=True
        )
        client.close()


def test_learning_views_on_the_emulator_equal_duckdb(bigquery_emulator: BigQueryEmulator, tmp_path: Path):
    """Purchases, refunds and chargebacks with TalentLMS activity: sign-ins, completions, re-reads of the
    timeline (same activity, new event id), redeliveries (same event id, appended twice on BigQuery) and
    an activity attributed to two purchases (two rows of one event)."""
    events = list(generate_events(LEARNING_PAYMENTS, seed=23))
    events += _learning(events)
    redelivered = events[:20] + events[-60:]

    duck = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    duck.migrate()
    project_events(duck, events + redelivered, KEY)

    client = bigquery_emulator.client()
    bq = BigQueryWarehouse(
        bigquery_emulator.project, f"cb_{uuid.uuid4().hex[:8]}", client=client, job_timeout=60
    )
    try:
        bq.migrate()
        project_events(bq, events, KEY)
        project_events(bq, redelivered, KEY)
        raw = run_query(client, f"SELECT COUNT(*) AS n FROM `{bq.qualified}.learning`")[0]["n"]
        assert raw > duck.query("SELECT COUNT(*) AS n FROM coursebridge.learning")[0]["n"]  # duplicates
        assert bq.count("learning") == duck.count("learning")
        compared = {}
        for name in ("payment_states", *LEARNING_VIEWS):
            on_emulator = _rows(run_query(client, f"SELECT * FROM `{bq.qualified}.{name}`"), name)
            on_duckdb = _rows(duck.query_view(name), name)
            assert on_emulator, name
            assert on_emulator == on_duckdb, name
            compared[name] = len(on_duckdb)
        # Not vacuous: cohorts with starters and completers, refunds in more than one progress bucket.
        assert compared["learning_cohorts"] >= 6 and compared["learning_activity"] > 100
        cohorts = duck.query_view("learning_cohorts")
        assert sum(r["completed"] for r in cohorts) > 0
        assert sum(r["first_access_hours_median"] is not None for r in cohorts) >= 6
        by_progress = duck.query_view("refund_rate_by_progress", "refunded > 0")
        assert len({r["bucket"] for r in by_progress}) >= 2
    finally:
        client.close()  # the emulator process and its data go with the fixture


def test_migrations_change_only_what_changed_and_tolerate_replicas(bigquery_emulator: BigQueryEmulator):
    client = bigquery_emulator.client()
    dataset = f"cb_{uuid.uuid4().hex[:8]}"
    try:
        # Two replicas starting at once on the provisioned dataset (the emulator answers 500, not 409,
        # to a concurrent create_dataset; the Helm chart's Config Connector creates the dataset anyway).
        client.create_dataset(f"{bigquery_emulator.project}.{dataset}")
        replicas = [
            BigQueryWarehouse(bigquery_emulator.project, dataset, client=client, job_timeout=20) for _ in "ab"
        ]
        errors: list[BaseException] = []

        def start(warehouse: BigQueryWarehouse) -> None:
            try:
                warehouse.migrate()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=start, args=(w,)) for w in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        bq = replicas[0]
        views = load_views()
        # A second start changes nothing; a changed view is updated, and only that one.
        assert {bq._ensure_view(v) for v in views} == {"unchanged"}
        changed = View(views[-1].name, views[-1].sql + "\n-- changed")
        assert bq._ensure_view(changed) == "updated"
        assert bq._ensure_view(changed) == "unchanged"
        assert bq._ensure_view(views[-1]) == "updated"
        assert run_query(client, f"SELECT COUNT(*) AS n FROM `{bq.qualified}.revenue_daily`")[0]["n"] == 0
    finally:
        client.delete_dataset(
            f"{bigquery_emulator.project}.{dataset}", delete_contents=True, not_found_ok=True
        )
        client.close()
