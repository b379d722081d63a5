"""Projection: idempotent by event id, order-independent, and free of personal data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.adapters.duckdb_warehouse import SCHEMA
from analytics.domain.projection import project, pseudonym
from analytics.service_layer.projector import project_events
from analytics.synthetic import generate_events
from coursebridge.events import new_event

from .conftest import KEY

SAMPLE = {
    "hotmart": {
        "event_id": "hm-1",
        "event": "PURCHASE_APPROVED",
        "version": "2.0.0",
        "created_at": "2025-03-05T10:00:00.000Z",
    },
    "kind": "purchase_approved",
    "occurred_at": "2025-03-05T10:00:00.000Z",
    "transaction": "HP2000000001",
    "product": {"id": "4712", "ucode": "u", "name": "Spreadsheet Mastery (lifetime access)"},
    "buyer": {
        "email": "Bruno.Lima@Example.com",
        "name": "Bruno Lima",
        "first_name": "Bruno",
        "last_name": "Lima",
    },
    "purchase": {
        "status": "approved",
        "raw_status": "APPROVED",
        "recurrence_number": None,
        "approved_at": "2025-03-05T10:00:00.000Z",
        "order_at": "2025-03-05T10:00:00.000Z",
        "next_charge_at": None,
        "price": {"value": 297.0, "currency": "BRL"},
        "full_price": {"value": 297.0, "currency": "BRL"},
        "offer_code": "life297",
        "coupon_code": "WELCOME10",
        "payment_type": "CREDIT_CARD",
        "installments": 3,
        "business_model": "I",
        "is_subscription": False,
        "country_iso": "BR",
    },
    "commissions": [
        {"source": "MARKETPLACE", "value": 29.4, "currency": "BRL"},
        {"source": "AFFILIATE", "value": 89.1, "currency": "BRL"},
        {"source": "PRODUCER", "value": 178.5, "currency": "BRL"},
    ],
    "subscription": None,
    "plan_switch": None,
    "member": None,
    "ordering_key": "HP2000000001",
}


def approved_event(event_id: str = "evt-1"):
    return new_event(
        "coursebridge.payment.purchase_approved.v1",
        SAMPLE,
        source="coursebridge/ingest",
        correlation_id="HP2000000001",
        subject="HP2000000001",
        event_id=event_id,
        time=datetime(2025, 3, 5, 10, tzinfo=UTC),
    )


def test_payment_fact_takes_price_producer_net_and_a_keyed_buyer_hash():
    row = project(approved_event(), KEY).rows["payments"][0]
    assert row["price"] == Decimal("297") and row["producer_net"] == Decimal("178.5")
    assert (row["product_id"], row["currency"], row["offer_code"]) == ("4712", "BRL", "life297")
    assert row["buyer_key"] == pseudonym(KEY, "bruno.lima@example.com")
    assert len(row["buyer_key"]) == 64 and row["buyer_key"] != pseudonym(b"other", "bruno.lima@example.com")


def test_the_same_event_twice_is_one_row(warehouse):
    event = approved_event()
    assert project_events(warehouse, [event], KEY) == 1
    assert project_events(warehouse, [event, event], KEY) == 0
    assert warehouse.count("events") == 1 and warehouse.count("payments") == 1


def test_no_email_name_document_or_phone_reaches_any_table(warehouse):
    events = [approved_event(), *generate_events(200, seed=3)]
    data = dict(SAMPLE, buyer=dict(SAMPLE["buyer"], document="12345678909", phone="+5511987654321"))
    events.append(approved_event("evt-2").with_data(data))
    project_events(warehouse, events, KEY)
    dump = ""
    for table in ("events", "payments", "enrollments", "subscriptions", "catalogue"):
        dump += json.dumps(warehouse.query(f"SELECT * FROM {SCHEMA}.{table}"), default=str)
    lowered = dump.lower()
    assert "@example.com" not in lowered and "@" not in dump
    for secret in ("bruno", "lima", "12345678909", "5511987654321", "person"):
        assert secret not in lowered, secret


EVENTS = list(generate_events(120, seed=11))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.permutations(range(len(EVENTS))),
    duplicates=st.lists(st.integers(0, len(EVENTS) - 1), max_size=40),
    batch=st.integers(1, 50),
)
def test_duplicated_and_shuffled_streams_give_the_same_totals(tmp_path_factory, order, duplicates, batch):
    from analytics.adapters.duckdb_warehouse import DuckDBWarehouse

    warehouse = DuckDBWarehouse(tmp_path_factory.mktemp("wh") / "a.duckdb")
    warehouse.migrate()
    stream = [EVENTS[i] for i in order] + [EVENTS[i] for i in duplicates]
    for start in range(0, len(stream), batch):
        project_events(warehouse, stream[start : start + batch], KEY)
    totals = warehouse.query(f"SELECT count(*) AS n, sum(net) AS net FROM {SCHEMA}.revenue_daily")[0]
    assert warehouse.count("events") == len(EVENTS)
    assert totals == EXPECTED_TOTALS


def _expected() -> dict:
    import tempfile
    from pathlib import Path

    from analytics.adapters.duckdb_warehouse import DuckDBWarehouse

    warehouse = DuckDBWarehouse(Path(tempfile.mkdtemp()) / "a.duckdb")
    warehouse.migrate()
    project_events(warehouse, EVENTS, KEY)
    return warehouse.query(f"SELECT count(*) AS n, sum(net) AS net FROM {SCHEMA}.revenue_daily")[0]


EXPECTED_TOTALS = _expected()
