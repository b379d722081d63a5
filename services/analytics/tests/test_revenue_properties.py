"""Revenue property tests: random streams of approvals, renewals, completions, partial and full refunds,
chargebacks and duplicates in several currencies; the views equal the plain-Python reference.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.service_layer.projector import project_events
from analytics.synthetic import payment_event

from . import reference
from .conftest import KEY

START = datetime(2025, 1, 1, 9, tzinfo=UTC)
CURRENCIES = ("BRL", "USD", "EUR")
PRICES = ("49.90", "100.00", "297.00", "9.99")
FOLLOW_UPS = ("complete", "refund", "partial_refund", "chargeback")

charge = st.fixed_dictionaries(
    {
        "product": st.sampled_from(("4711", "4712", "4713")),
        "currency": st.sampled_from(CURRENCIES),
        "producer_currency": st.sampled_from(CURRENCIES),
        "price": st.sampled_from(PRICES),
        "renewals": st.integers(0, 2),
        "day": st.integers(0, 75),
        "approved": st.booleans() | st.just(True),
        "follow_ups": st.lists(st.tuples(st.sampled_from(FOLLOW_UPS), st.integers(0, 40)), max_size=3),
    }
)


def build_stream(charges: list[dict], redeliver: list[int], reannounce: list[int]) -> list:
    events = []
    for n, c in enumerate(charges):
        subscriber = f"SUB{n}" if c["renewals"] else None
        for recurrence in range(c["renewals"] + 1):
            at = START + timedelta(days=c["day"] + 30 * recurrence, minutes=n)
            common = {
                "transaction": f"HP{n:05d}{recurrence}",
                "product": c["product"],
                "currency": c["currency"],
                "price": c["price"],
                "recurrence": recurrence + 1 if subscriber else None,
                "subscriber": subscriber,
                "producer": (
                    (Decimal(c["price"]) * Decimal("0.8")).quantize(Decimal("0.01")),
                    c["producer_currency"],
                ),
                "full_price": Decimal(c["price"]) * Decimal("1.2"),  # instalment interest: never counted
            }
            if c["approved"] or recurrence:
                events.append(
                    payment_event("purchase_approved", event_id=f"a{n}.{recurrence}", at=at, **common)
                )
            for i, (follow_up, offset) in enumerate(c["follow_ups"]):
                kind = {"complete": "purchase_complete", "chargeback": "purchase_chargeback"}.get(
                    follow_up, "purchase_refunded"
                )
                status = "partially_refunded" if follow_up == "partial_refund" else None
                event_id = f"f{n}.{recurrence}.{i}"
                events.append(
                    payment_event(
                        kind,
                        event_id=event_id,
                        at=at + timedelta(days=offset, hours=1),
                        status=status,
                        **common,
                    )
                )
    if events:
        events += [events[i % len(events)] for i in redeliver]  # the bus redelivers: same event id
        for i in reannounce:  # Hotmart announces the same change again under another id
            original = events[i % len(events)]
            data = dict(original.data, hotmart=dict(original.data["hotmart"], event_id=f"again-{i}"))
            later = original.time + timedelta(minutes=5)
            again = replace(original, data=data, id=f"again-{i}-{original.id}", time=later)
            events.append(again)
    return events


def _views(events: list) -> tuple[dict, dict, dict]:
    warehouse = DuckDBWarehouse(Path(tempfile.mkdtemp(prefix="revenue-")) / "a.duckdb")
    warehouse.migrate()
    project_events(warehouse, events, KEY)
    daily = {
        (r["day"].isoformat(), r["product_id"], r["currency"]): {
            k: r[k] for k in (*reference.MEASURES, *reference.COUNTS)
        }
        for r in warehouse.query_view("revenue_daily")
    }
    mrr = {
        (r["month"].isoformat(), r["product_id"], r["currency"]): {
            "mrr": r["mrr"],
            "active_subscribers": r["active_subscribers"],
            "new_subscribers": r["new_subscribers"],
        }
        for r in warehouse.query_view("mrr_monthly")
    }
    churn = {
        (r["month"].isoformat(), r["product_id"]): {
            "subscribers_at_start": r["subscribers_at_start"],
            "churned": r["churned"],
        }
        for r in warehouse.query_view("churn_monthly")
    }
    return daily, mrr, churn


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    charges=st.lists(charge, min_size=1, max_size=10),
    redeliver=st.lists(st.integers(0, 200), max_size=6),
    reannounce=st.lists(st.integers(0, 200), max_size=4),
)
def test_views_equal_the_python_reference(charges, redeliver, reannounce):
    events = build_stream(charges, redeliver, reannounce)
    daily, mrr, churn = _views(events)
    assert daily == reference.revenue_daily(events)
    assert mrr == reference.mrr_monthly(events)
    assert churn == reference.churn_monthly(events)
    for row in daily.values():  # never double-subtracted: each charge reverses at most its price once
        assert row["net"] == row["gross"] - row["refunds"] - row["chargebacks"]


def _one(kind: str, day: int, status: str | None = None, event_id: str | None = None, **overrides):
    fields = {
        "transaction": "HP1",
        "product": "4712",
        "currency": "BRL",
        "price": "100.00",
        "producer": ("80.00", "BRL"),
        **overrides,
    }
    at = START + timedelta(days=day)
    return payment_event(
        kind,
        event_id=event_id or f"{fields['transaction']}-{kind}-{day}-{status}",
        at=at,
        status=status,
        **fields,
    )


def _totals(events: list) -> dict[str, Decimal]:
    daily, _, _ = _views(events)
    totals: dict[str, Decimal] = {}
    for (_day, _product, currency), row in daily.items():
        for name in ("gross", "refunds", "chargebacks", "net", "producer_net"):
            totals[f"{currency}.{name}"] = totals.get(f"{currency}.{name}", Decimal(0)) + row[name]
    return {k: v for k, v in totals.items() if v}


def test_refund_then_chargeback_nets_zero_and_counts_as_the_later_chargeback():
    events = [
        _one("purchase_approved", 0),
        _one("purchase_refunded", 3, producer=("0", "BRL")),  # a refund body without the commission
        _one("purchase_chargeback", 9),
    ]
    assert _totals(events) == {"BRL.gross": 100, "BRL.chargebacks": 100}  # net and producer net 0


def test_a_partial_refund_subtracts_nothing_it_does_not_know_and_a_later_full_refund_wins():
    partial = [_one("purchase_approved", 0), _one("purchase_refunded", 2, status="partially_refunded")]
    assert _totals(partial) == {"BRL.gross": 100, "BRL.net": 100, "BRL.producer_net": 80}
    daily, _, _ = _views(partial)
    assert sum(r["partial_refund_count"] for r in daily.values()) == 1
    full = [*partial, _one("purchase_refunded", 5)]
    assert _totals(full) == {"BRL.gross": 100, "BRL.refunds": 100}


def test_a_full_refund_takes_back_the_price_not_the_full_price_paid_with_interest():
    events = [
        _one("purchase_approved", 0, full_price="1194.00", price="997.00"),
        _one("purchase_refunded", 2, full_price="1194.00", price="997.00"),
    ]
    assert _totals(events) == {"BRL.gross": 997, "BRL.refunds": 997}


def test_producer_net_is_in_the_commissions_currency_and_currencies_never_add_up():
    events = [
        _one("purchase_approved", 0, transaction="HP1", price="179.40", producer=("150.00", "BRL")),
        _one(
            "purchase_approved",
            0,
            transaction="HP2",
            currency="USD",
            price="100.00",
            producer=("432.00", "BRL"),
        ),
    ]
    assert _totals(events) == {
        "BRL.gross": Decimal("179.40"),
        "BRL.net": Decimal("179.40"),
        "BRL.producer_net": Decimal("582.00"),
        "USD.gross": 100,
        "USD.net": 100,
    }


def test_completed_is_reported_apart_and_not_added_to_net():
    daily, _, _ = _views([_one("purchase_approved", 0), _one("purchase_complete", 30)])
    assert sum(r["gross"] for r in daily.values()) == 100 and sum(r["net"] for r in daily.values()) == 100
    assert sum(r["completed"] for r in daily.values()) == 100
    assert sum(r["completed_count"] for r in daily.values()) == 1
