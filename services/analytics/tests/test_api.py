"""GET /revenue/daily and the dashboard's endpoints: 401 without the token, 400 on bad input, 200 rows."""

from __future__ import annotations

import pytest

from analytics.bootstrap import build_api
from analytics.config import AnalyticsSettings
from analytics.service_layer.projector import project_events
from analytics.synthetic import generate_events
from coursebridge.config import PlatformSettings

from .conftest import ADMIN_TOKEN, KEY


@pytest.fixture
def client(tmp_path, warehouse):
    project_events(warehouse, list(generate_events(600, seed=1)), KEY)
    settings = AnalyticsSettings(
        platform=PlatformSettings(data_dir=tmp_path, service_name="analytics"),
        pseudonym_key=KEY,
        admin_token=ADMIN_TOKEN,
    )
    return build_api(settings, warehouse=warehouse).test_client()


AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_revenue_needs_the_token(client):
    assert client.get("/revenue/daily?from=2025-01-01&to=2025-01-31").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/revenue/daily?from=2025-01-01&to=2025-01-31", headers=wrong).status_code == 401
    assert client.get("/views/mrr_monthly").status_code == 401


@pytest.mark.parametrize(
    "query",
    [
        "",
        "from=2025-01-01",
        "from=2025-13-01&to=2025-12-31",
        "from=2025-02-30&to=2025-03-01",
        "from=2025-03-01&to=2025-02-01",
        "from=2020-01-01&to=2025-01-01",
        "from=20250101&to=20250102",
        "from=2025-01-01&to=2025-01-02&currency=brl",
        "from=2025-01-01&to=2025-01-02&product=a%20b",
    ],
)
def test_bad_dates_and_ranges_are_400(client, query):
    response = client.get(f"/revenue/daily?{query}", headers=AUTH)
    assert response.status_code == 400, response.json


def test_revenue_rows(client):
    response = client.get("/revenue/daily?from=2025-01-01&to=2025-03-31&currency=BRL", headers=AUTH)
    assert response.status_code == 200
    rows = response.json
    assert rows and {
        "date",
        "currency",
        "gross",
        "completed",
        "refunds",
        "chargebacks",
        "net",
        "producer_net",
        "purchases",
        "partial_refund_count",
    } <= set(rows[0])
    assert all(r["currency"] == "BRL" and "2025-01-01" <= r["date"] <= "2025-03-31" for r in rows)
    assert all(abs(r["gross"] - r["refunds"] - r["chargebacks"] - r["net"]) < 1e-6 for r in rows)
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)


def test_every_figure_is_per_currency_and_the_product_filter_narrows_it(client):
    whole = client.get("/revenue/summary?from=2025-01-01&to=2025-06-30", headers=AUTH).json
    assert [c["currency"] for c in whole["currencies"]] == ["BRL", "USD"]
    one = client.get("/revenue/summary?from=2025-01-01&to=2025-06-30&product=4712", headers=AUTH).json
    for mine, everything in zip(one["currencies"], whole["currencies"], strict=True):
        assert mine["currency"] == everything["currency"]
        assert 0 < mine["gross"] < everything["gross"]
    assert one["currencies"][0]["mrr"] == 0  # 4712 is a one-off product
    daily = client.get("/revenue/daily?from=2025-01-01&to=2025-06-30&product=4711", headers=AUTH).json
    assert daily and sum(r["gross"] for r in daily) < sum(c["gross"] for c in whole["currencies"])
    mrr = client.get("/views/mrr_monthly?from=2025-02-01&to=2025-03-15", headers=AUTH).json
    assert {r["month"] for r in mrr} == {"2025-02-01", "2025-03-01"}
    options = client.get("/revenue/options", headers=AUTH).json
    assert options["products"] == ["4711", "4712", "4713"] and options["currencies"] == ["BRL", "USD"]


def test_conversion_uses_only_the_rates_the_owner_loaded(client, warehouse, tmp_path):
    from analytics.entrypoints.cli import BadRatesFile, parse_rates

    bad = tmp_path / "bad.csv"
    bad.write_text("day,currency,reporting_currency,rate\n2025-01-01,USD,BRL,-5\n")
    with pytest.raises(BadRatesFile, match=":2: the rate must be a positive"):
        parse_rates(bad)
    good = tmp_path / "rates.csv"
    good.write_text(
        "day,currency,reporting_currency,rate\n"
        + "".join(f"2025-01-{d:02d},USD,BRL,5.00\n" for d in range(1, 16))
    )
    warehouse.load_rates(parse_rates(good))
    body = client.get("/revenue/summary?from=2025-01-01&to=2025-01-31&report=BRL", headers=AUTH).json
    converted = body["converted"]
    by = {c["currency"]: c for c in body["currencies"]}
    usd_days = {
        r["date"]
        for r in client.get("/revenue/daily?from=2025-01-16&to=2025-01-31&currency=USD", headers=AUTH).json
    }
    assert {m["day"] for m in converted["missing_rates"]} == usd_days and usd_days
    first_half = client.get("/revenue/daily?from=2025-01-01&to=2025-01-15&currency=USD", headers=AUTH).json
    expected = by["BRL"]["gross"] + 5 * sum(r["gross"] for r in first_half)
    assert abs(converted["gross"] - expected) < 1e-6


def test_monthly_views_by_name(client):
    assert client.get("/views/mrr_monthly?from=2025-01-01&to=2025-06-30", headers=AUTH).json
    assert client.get("/views/mrr_monthly", headers=AUTH).status_code == 400
    assert client.get("/views/nope?from=2025-01-01&to=2025-06-30", headers=AUTH).status_code == 404


def test_mrr_and_churn_leave_out_the_month_still_in_progress(client, warehouse):
    from datetime import date

    from analytics.service_layer import reports

    scope = reports.Scope(date(2025, 1, 1), date(2025, 3, 31))
    body = reports.summary(warehouse, scope, today=date(2025, 3, 10))
    mrr = reports.monthly(warehouse, "mrr_monthly", scope, today=date(2025, 3, 10))
    assert {r["month"] for r in mrr if r["in_progress"]} == {date(2025, 3, 1)}
    brl = next(c for c in body["currencies"] if c["currency"] == "BRL")
    assert brl["mrr_month"] == date(2025, 2, 1)
    february = next(r for r in mrr if r["month"] == date(2025, 2, 1) and r["currency"] == "BRL")
    assert brl["mrr"] == february["mrr"] > 0
    churn = reports.monthly(warehouse, "churn_monthly", scope, today=date(2025, 3, 10))
    ended = [r for r in churn if r["month"] < date(2025, 3, 1)]
    assert body["churn"]["subscribers_at_start"] == sum(r["subscribers_at_start"] for r in ended) > 0
    later = reports.summary(warehouse, scope, today=date(2025, 6, 1))
    assert next(c for c in later["currencies"] if c["currency"] == "BRL")["mrr_month"] == date(2025, 3, 1)


def test_payments_of_a_transaction_each_once_oldest_first(client, warehouse):
    events = list(generate_events(600, seed=1))
    payments = [e for e in events if e.type.startswith("coursebridge.payment.") and e.data.get("transaction")]
    transaction = payments[0].data["transaction"]
    project_events(warehouse, [e for e in payments if e.data["transaction"] == transaction], KEY)  # again

    response = client.get(f"/admin/payments?transaction={transaction}", headers=AUTH)

    assert response.status_code == 200
    rows = response.json["payments"]
    expected = sorted(e.id for e in payments if e.data["transaction"] == transaction)
    assert sorted(r["event_id"] for r in rows) == expected  # each once, though projected twice
    assert [r["occurred_at"] for r in rows] == sorted(r["occurred_at"] for r in rows)
    assert all(r["transaction"] == transaction and "buyer_key" not in r for r in rows)
    assert client.get("/admin/payments?transaction=nope-0", headers=AUTH).json == {"payments": []}
    assert client.get("/admin/payments?transaction=a%20b", headers=AUTH).status_code == 400
    assert client.get(f"/admin/payments?transaction={transaction}").status_code == 401
