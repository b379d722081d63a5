"""The revenue model: BigQuery SQL transpiled to DuckDB gives what an independent Python computation gives."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import sqlglot

from analytics.adapters.duckdb_warehouse import SCHEMA
from analytics.service_layer.projector import project_events, rebuild
from analytics.synthetic import generate_events
from analytics.views import VIEW_ORDER, load_views

from . import reference
from .conftest import KEY


def test_every_view_is_valid_bigquery_sql_and_transpiles():
    for view in load_views():
        sqlglot.parse_one(view.bigquery("proj.coursebridge"), read="bigquery")
        assert "`" not in view.duckdb(SCHEMA)
    assert [v.name for v in load_views()] == list(VIEW_ORDER)


def test_transpiled_views_equal_the_python_computation(warehouse):
    events = list(generate_events(3000, seed=5))
    events += events[:300]  # redeliveries
    project_events(warehouse, events, KEY)

    expected = reference.revenue_daily_totals(events)
    fields = (*reference.MEASURES, *reference.COUNTS)
    got = {
        (r["day"].isoformat(), r["currency"]): {k: r[k] for k in fields}
        for r in warehouse.query_view("revenue_daily_totals")
    }
    assert got == expected
    assert {c for _, c in got} == {"BRL", "USD"}
    kinds = {
        e.data.get("purchase", {}).get("status") for e in events if e.type.startswith("coursebridge.payment")
    }
    assert {"complete", "partially_refunded", "chargeback", "refunded"} <= kinds

    expected_mrr = reference.mrr_monthly(events)
    got_mrr = {
        (r["month"].isoformat(), r["product_id"], r["currency"]): {
            "mrr": r["mrr"],
            "active_subscribers": r["active_subscribers"],
            "new_subscribers": r["new_subscribers"],
        }
        for r in warehouse.query_view("mrr_monthly")
    }
    assert got_mrr == expected_mrr
    got_churn = {
        (r["month"].isoformat(), r["product_id"]): {
            "subscribers_at_start": r["subscribers_at_start"],
            "churned": r["churned"],
        }
        for r in warehouse.query_view("churn_monthly")
    }
    assert got_churn == reference.churn_monthly(events)


def test_refund_rates_count_every_winning_reversal(warehouse):
    events = list(generate_events(400, seed=9))
    project_events(warehouse, events, KEY)
    rates = warehouse.query_view("refund_rates_monthly")
    charges = reference.charges(events).values()
    reversals = [c["reversed"] for c in charges if "reversed" in c]
    assert sum(r["refund_count"] + r["chargeback_count"] + r["partial_refund_count"] for r in rates) == len(
        reversals
    )
    assert all((r["refund_rate"] or 0) >= 0 for r in rates)


def test_revenue_daily_filters_by_range_and_currency(warehouse):
    project_events(warehouse, list(generate_events(500, seed=2)), KEY)
    rows = warehouse.revenue_daily(date(2025, 2, 1), date(2025, 2, 10), "USD")
    assert rows and all(
        r["currency"] == "USD" and date(2025, 2, 1) <= r["day"] <= date(2025, 2, 10) for r in rows
    )


def test_rebuild_from_the_raw_log_is_idempotent(warehouse):
    project_events(warehouse, list(generate_events(800, seed=4)), KEY)
    before = warehouse.query_view("revenue_daily")
    counts = {t: warehouse.count(t) for t in ("payments", "enrollments", "subscriptions")}
    assert rebuild(warehouse, KEY, batch_size=97) == warehouse.count("events")
    assert rebuild(warehouse, KEY, batch_size=1000) == warehouse.count("events")
    assert warehouse.query_view("revenue_daily") == before
    assert {t: warehouse.count(t) for t in counts} == counts
    assert sum(r["net"] for r in before) > Decimal(0)
