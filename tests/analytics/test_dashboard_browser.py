"""The dashboard in a real (headless Debian chromium) browser against a live local server with seeded data.

Skipped when chromium or playwright is missing, except with CI=true (install: tools/install_chromium.sh).
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.bootstrap import build_api
from analytics.config import AnalyticsSettings
from analytics.service_layer.projector import project_events
from analytics.synthetic import generate_events, learning_events_for, payment_event
from coursebridge.config import PlatformSettings

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-test-token"


def _require_browser():
    in_ci = os.environ.get("CI", "").lower() == "true"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            pytest.fail("playwright is not installed")
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        if in_ci:
            pytest.fail(f"{CHROMIUM} is missing: run tools/install_chromium.sh")
        pytest.skip(f"{CHROMIUM} is missing (tools/install_chromium.sh installs it)")
    return sync_playwright


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


TODAY = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


def _hand_made() -> list:
    """Product 5001: 179.40 BRL and 100 USD sold 3 days ago; a 50 BRL sale refunded then charged back."""
    common = {"product": "5001", "email": "hand@example.com"}
    at = TODAY - timedelta(days=3)
    return [
        payment_event(
            "purchase_approved",
            event_id="h1",
            at=at,
            transaction="HPH1",
            currency="BRL",
            price="179.40",
            producer=("150.00", "BRL"),
            **common,
        ),
        payment_event(
            "purchase_approved",
            event_id="h2",
            at=at,
            transaction="HPH2",
            currency="USD",
            price="100.00",
            producer=("430.00", "BRL"),
            **common,
        ),
        payment_event(
            "purchase_approved",
            event_id="h3",
            at=at - timedelta(days=5),
            transaction="HPH3",
            currency="BRL",
            price="50.00",
            producer=("40.00", "BRL"),
            **common,
        ),
        payment_event(
            "purchase_refunded",
            event_id="h4",
            at=at - timedelta(days=4),
            transaction="HPH3",
            currency="BRL",
            price="50.00",
            producer=("40.00", "BRL"),
            **common,
        ),
        payment_event(
            "purchase_chargeback",
            event_id="h5",
            at=at - timedelta(days=2),
            transaction="HPH3",
            currency="BRL",
            price="50.00",
            producer=("40.00", "BRL"),
            **common,
        ),
    ]


@pytest.fixture
def server(tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    warehouse.migrate()
    start = TODAY - timedelta(days=400)
    events = list(generate_events(3000, seed=8, start=start, days=400)) + _hand_made()
    events += learning_events_for(events, seed=9, until=datetime.now(UTC))  # their TalentLMS activity
    project_events(warehouse, events, b"k")
    settings = AnalyticsSettings(
        platform=PlatformSettings(data_dir=tmp_path, service_name="analytics"),
        pseudonym_key=b"k",
        admin_token=TOKEN,
    )
    app = build_api(settings, warehouse=warehouse)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    httpd = make_server("127.0.0.1", port, app, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()


def _open(page, server: str, query: str = "") -> None:
    page.goto(f"{server}/dashboard{query}")
    page.wait_for_selector("#login:not([hidden]), body[data-rendered=true]", timeout=20000)
    if page.locator("#login").is_visible():
        page.fill("#token", TOKEN)
        page.click("#login button[type=submit]")
    page.wait_for_selector("body[data-rendered=true]", timeout=20000)


def _state(page) -> dict:
    return page.evaluate("JSON.parse(JSON.stringify(window.coursebridgeDashboard))")


def _rerender(page, action) -> None:
    page.evaluate("document.body.removeAttribute('data-rendered')")
    action()
    page.wait_for_selector("body[data-rendered=true]", timeout=20000)


def _tile(page, kpi: str, currency: str) -> str:
    return page.locator(f'.kpi-row[data-currency="{currency}"] [data-kpi="{kpi}"] .value').inner_text()


def test_dashboard_kpis_per_currency_time_axis_and_filters(server):
    sync_playwright = _require_browser()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            external: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(server) else external.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            _open(page, server)

            # Default range: the last 90 days (make samples dates its samples into it).
            state = _state(page)
            assert state["to"] == datetime.now(UTC).date().isoformat()
            assert len(state["labels"]) == 90 and [d for d, _ in state["series"]["net"]] == state["labels"]
            for chart in ("net", "gross", "mrr", "churn", "rates"):
                assert page.locator(f"#chart-{chart} svg").count() == 1, chart
            assert page.locator(".kpi-row[data-currency=BRL]").count() == 1
            assert page.locator(".kpi-row[data-currency=USD]").count() == 1
            # Learning: cohorts of the range's months and refund rates by progress, as tables.
            learning = state["learning"]
            assert learning["cohorts"]["rows"] and learning["cohorts"]["activity"]["events"] > 0
            assert page.locator("#learning-cohorts tr").count() == len(learning["cohorts"]["rows"]) + 1
            assert page.locator("#learning-refunds tr").count() == len(learning["refunds"]["rows"]) + 1
            assert "TalentLMS activities recorded" in page.locator("#learning-note").inner_text()
            assert learning["cohorts"]["activity"]["last_occurred_at"] < datetime.now(UTC).isoformat()
            page.screenshot(path=str(SCREENSHOTS / "analytics-dashboard.png"), full_page=True)

            # One product: each currency on its own, never added (179.40 BRL and 100.00 USD, not 279.4).
            _rerender(page, lambda: page.select_option("#product", "5001"))
            assert _tile(page, "gross", "BRL") == "229.40 BRL"  # 179.40 + 50.00 charged back later
            assert _tile(page, "gross", "USD") == "100.00 USD"
            assert _tile(page, "net", "BRL") == "179.40 BRL"  # refunded then charged back: subtracted once
            assert _tile(page, "chargebacks", "BRL") == "50.00 BRL"
            assert _tile(page, "refunds", "BRL") == "0.00 BRL"
            assert _tile(page, "producer_net", "BRL") == "580.00 BRL"  # the USD sale's commission is in BRL
            assert _tile(page, "net", "USD") == "100.00 USD"
            assert "279.4" not in page.locator("#kpis").inner_text()
            narrow = _state(page)
            assert narrow["product"] == "5001" and narrow["currency"] == "BRL"
            assert {r["product_id"] for r in narrow["learning"]["refunds"]["rows"]} == {"5001"}
            # A real time axis: every day of the range, days without money at zero.
            assert len(narrow["series"]["gross"]) == 90
            assert [d for d, v in narrow["series"]["gross"] if v] == [
                (TODAY - timedelta(days=n)).date().isoformat() for n in (8, 3)
            ]
            assert sum(1 for _, v in narrow["series"]["net"] if v == 0) == 87
            # The filter narrows every chart: a one-off product has no MRR and no subscribers.
            assert all(r["mrr"] == 0 for r in narrow["mrr"])
            assert sum(v for _, v in narrow["series"]["gross"]) < sum(v for _, v in state["series"]["gross"])
            assert sum(r["purchases"] for r in narrow["rates"]) < sum(r["purchases"] for r in state["rates"])
            page.screenshot(path=str(SCREENSHOTS / "analytics-dashboard-product.png"), full_page=True)

            # The subscription product narrows MRR and subscribers too; presets change the range.
            _rerender(page, lambda: page.select_option("#product", "4711"))
            sub = _state(page)
            assert sub["mrr"] and all(r["mrr"] > 0 for r in sub["mrr"])
            assert sum(r["mrr"] for r in sub["mrr"]) <= sum(r["mrr"] for r in state["mrr"])
            _rerender(page, lambda: page.click("[data-range='12m']"))
            year = _state(page)
            assert len(year["labels"]) in (365, 366) and year["product"] == "4711"
            _rerender(page, lambda: page.click("[data-range='7d']"))
            assert len(_state(page)["labels"]) == 7
            _rerender(page, lambda: page.click("[data-range='30d']"))
            assert len(_state(page)["labels"]) == 30

            assert external == [] and errors == []
            # The token stays in the tab: a reload renders again without asking.
            page.reload()
            page.wait_for_selector("body[data-rendered=true]", timeout=20000)
            assert page.locator("#login").is_hidden()
        finally:
            browser.close()
