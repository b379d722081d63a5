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
    ],
)
def test_bad_dates_and_ranges_are_400(client, query):
    response = client.get(f"/revenue/daily?{query}", headers=AUTH)
    assert response.status_code == 400, response.json


def test_revenue_rows(client):
    response = client.get("/revenue/daily?from=2025-01-01&to=2025-03-31&currency=BRL", headers=AUTH)
    assert response.status_code == 200
    rows = response.json
    assert rows and set(rows[0]) == {
        "date",
        "currency",
        "gross",
        "refunds",
        "chargebacks",
        "net",
        "purchases",
    }
    assert all(r["currency"] == "BRL" and "2025-01-01" <= r["date"] <= "2025-03-31" for r in rows)
    assert all(abs(r["gross"] - r["refunds"] - r["chargebacks"] - r["net"]) < 1e-6 for r in rows)
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)


def test_dashboard_and_assets_are_served_without_a_cdn(client):
    page = client.get("/dashboard")
    assert page.status_code == 200 and b"<svg" not in page.data
    assert b"http://" not in page.data and b"https://" not in page.data
    for asset in ("charts.js", "dashboard.js", "dashboard.css"):
        response = client.get(f"/dashboard/static/{asset}")
        assert response.status_code == 200 and b"https://" not in response.data
    assert client.get("/dashboard/static/../config.py").status_code == 404
    assert client.get("/views/mrr_monthly", headers=AUTH).json
    assert client.get("/views/nope", headers=AUTH).status_code == 404
