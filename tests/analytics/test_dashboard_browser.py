"""The dashboard in a real (headless Debian chromium) browser against a live local server with seeded data.

Skipped when chromium or playwright is missing, except with CI=true (install: tools/install_chromium.sh).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.bootstrap import build_api
from analytics.config import AnalyticsSettings
from analytics.service_layer.projector import project_events
from analytics.synthetic import generate_events
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
SCREENSHOT = Path("/tmp/analytics_dashboard.png")


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


@pytest.fixture
def server(tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    warehouse.migrate()
    project_events(warehouse, list(generate_events(4000, seed=8, days=120)), b"k")
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


def test_dashboard_renders_charts_offline(server):
    sync_playwright = _require_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            external: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(server) else external.append(r.url))
            page.goto(f"{server}/dashboard?from=2025-01-01&to=2025-04-30")
            page.fill("#token", TOKEN)
            page.click("#login button[type=submit]")
            page.wait_for_selector("body[data-rendered=true]", timeout=15000)
            for chart in ("net", "gross", "mrr", "churn", "rates"):
                svg = page.locator(f"#chart-{chart} svg")
                assert svg.count() == 1, chart
                assert int(svg.get_attribute("data-points")) > 1, chart
            assert page.locator("#chart-net path.series").count() == 1
            assert page.locator("#chart-net circle.point").count() > 30
            assert page.locator("#chart-gross rect.bar").count() > 30
            assert page.locator("#chart-mrr rect.bar").count() >= 3
            assert external == []
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            # The token stays in the tab: a reload renders again without asking.
            page.reload()
            page.wait_for_selector("body[data-rendered=true]", timeout=15000)
            assert page.locator("#login").is_hidden()
        finally:
            browser.close()
