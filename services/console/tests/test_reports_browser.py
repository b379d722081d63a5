"""The Revenue and Learning pages in a real browser (headless Debian chromium, Playwright) against the
services running in this process, analytics holding known purchases: KPI per currency (BRL and USD never
added), every day of the range on a time axis with empty days at zero, a product filter that narrows every
chart, presets that change the range; learning charts from known cohorts and the plain empty state.
Screenshots go to ``CONSOLE_SCREENSHOT_DIR`` (docs/console/ for docs/console.md and docs/analytics.md).

Skipped when chromium or playwright is missing, except with CI=true (install: tools/install_chromium.sh).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from inproc_stack import ADMIN_TOKEN, free_port
from test_console_browser import ARGS, CHROMIUM, _require_browser

from analytics.synthetic import generate_events, learning_event, learning_events_for, payment_event

pytestmark = pytest.mark.timeout(240)
NOW = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
TODAY = NOW.date()
CSP_WATCH = (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def _month(months_ago: int) -> str:
    first = TODAY.replace(day=1)
    for _ in range(months_ago):
        first = (first - timedelta(days=1)).replace(day=1)
    return first.isoformat()


def _known_purchases() -> list:
    """Product 5001: 179.40 BRL and 100.00 USD sold 3 days ago; 50 BRL sold 8 days ago, refunded 7 days
    ago and charged back 5 days ago (subtracted once)."""
    common = {"product": "5001", "email": "hand@example.com"}
    at = NOW - timedelta(days=3)
    sale = {"transaction": "HPC3", "currency": "BRL", "price": "50.00", "producer": ("40.00", "BRL")}
    return [
        payment_event(
            "purchase_approved",
            event_id="c1",
            at=at,
            transaction="HPC1",
            currency="BRL",
            price="179.40",
            producer=("150.00", "BRL"),
            **common,
        ),
        payment_event(
            "purchase_approved",
            event_id="c2",
            at=at,
            transaction="HPC2",
            currency="USD",
            price="100.00",
            producer=("430.00", "BRL"),
            **common,
        ),
        payment_event("purchase_approved", event_id="c3", at=at - timedelta(days=5), **sale, **common),
        payment_event("purchase_refunded", event_id="c4", at=at - timedelta(days=4), **sale, **common),
        payment_event("purchase_chargeback", event_id="c5", at=at - timedelta(days=2), **sale, **common),
    ]


@pytest.fixture(scope="module")
def seeded(stack, tmp_path_factory):
    from analytics.entrypoints.cli import parse_rates

    background = list(generate_events(600, seed=5, start=NOW - timedelta(days=130), days=130))
    assert stack.record_events(background + _known_purchases()) > 0
    stack.sample_payments = background
    rates = tmp_path_factory.mktemp("rates") / "rates.csv"  # the owner's USD→BRL rate of one day
    rates.write_text(f"day,currency,reporting_currency,rate\n{_day(3)},USD,BRL,5.00\n")
    stack.warehouse.load_rates(parse_rates(rates))
    return stack


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("CONSOLE_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def browser_page(seeded):
    sync_playwright = _require_browser()
    url = seeded.urls["console"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.add_init_script(CSP_WATCH)
            seen = {"consoles": [url], "errors": [], "urls": []}
            page.on("request", lambda r: seen["urls"].append(r.url))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.goto(f"{url}/signin?next=/revenue")
            page.fill("input[name=operator]", "maria@school.example")
            page.fill("input[name=token]", ADMIN_TOKEN)
            page.click("form[action='/signin'] button[type=submit]")
            page.wait_for_url(re.compile(r".*/revenue$"))
            yield page, url, seen
            assert seen["errors"] == []
            # every request went to a console (never to analytics, never off the machine)
            assert [u for u in seen["urls"] if not u.startswith(tuple(seen["consoles"]))] == []
            assert not [u for u in seen["urls"] if ADMIN_TOKEN in u]
        finally:
            browser.close()


def _rendered(page) -> None:
    """The page drew (or said why not), within the console's CSP: every page load is checked."""
    page.wait_for_selector("body[data-rendered]", timeout=20000)
    assert page.get_attribute("body", "data-rendered") == "true", page.locator("#status").inner_text()
    assert page.evaluate("window.__csp") == []


def _state(page, name: str) -> dict:
    return page.evaluate(f"JSON.parse(JSON.stringify(window.{name}))")


def _option(page, chart_id: str) -> dict:
    """What ECharts actually drew (its resolved option), not what the page meant to draw."""
    return page.evaluate(
        "id => { const o = echarts.getInstanceByDom(document.getElementById(id)).getOption();"
        " return JSON.parse(JSON.stringify({xAxis: o.xAxis, series: o.series.map("
        "s => ({name: s.name, type: s.type, data: s.data}))})); }",
        chart_id,
    )


def _tile(page, kpi: str, currency: str) -> str:
    return page.locator(f'.kpi-row[data-currency="{currency}"] [data-kpi="{kpi}"] .value').inner_text()


def _api(stack, path: str) -> dict:
    response = stack.admin("analytics", "GET", path)
    response.raise_for_status()
    return response.json()


def _money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def test_revenue_page_per_currency_time_axis_filters_and_presets(seeded, browser_page, shots):
    page, _url, seen = browser_page
    _rendered(page)
    assert page.locator("nav a[aria-current=page]").inner_text() == "Revenue"
    assert page.locator("[data-range='90d']").get_attribute("aria-current") == "true"

    # All products, the last 90 days: each currency's tiles are analytics' own figures for it, never summed.
    whole = _api(seeded, f"/revenue/summary?from={_day(89)}&to={_day(0)}")
    by_currency = {c["currency"]: c for c in whole["currencies"]}
    assert set(by_currency) == {"BRL", "USD"}
    for currency, figures in by_currency.items():
        assert _tile(page, "gross", currency) == _money(figures["gross"], currency)
        assert _tile(page, "net", currency) == _money(figures["net"], currency)
    added = by_currency["BRL"]["gross"] + by_currency["USD"]["gross"]
    assert f"{added:,.2f}" not in page.locator("#kpis").inner_text()
    state = _state(page, "coursebridgeRevenue")
    assert state["from"] == _day(89) and state["to"] == _day(0) and state["currency"] == "BRL"
    for chart in ("net", "gross", "mrr", "churn", "rates"):
        assert page.locator(f"#chart-{chart} svg").count() == 1, chart
    page.hover("#chart-net svg")  # a tooltip, drawn without inline styles
    page.screenshot(path=str(shots / "revenue.png"), full_page=True)

    # One product: 179.40 BRL and 100.00 USD side by side, never 279.40.
    page.select_option("#product", "5001")
    page.wait_for_url(re.compile(r".*product=5001.*"))
    _rendered(page)
    assert _tile(page, "gross", "BRL") == "229.40 BRL"  # 179.40 + the 50.00 charged back later
    assert _tile(page, "gross", "USD") == "100.00 USD"
    assert _tile(page, "net", "BRL") == "179.40 BRL"  # refunded then charged back: subtracted once
    assert _tile(page, "net", "USD") == "100.00 USD"
    assert _tile(page, "chargebacks", "BRL") == "50.00 BRL"
    assert _tile(page, "producer_net", "BRL") == "580.00 BRL"  # the USD sale's commission is paid in BRL
    assert _tile(page, "mrr", "BRL") == "0.00 BRL"
    assert "279.4" not in page.locator("#kpis").inner_text()

    # A real time axis: every day of the range, days without money at zero (read from ECharts itself).
    gross = _option(page, "chart-gross")
    assert gross["xAxis"][0]["type"] == "time"
    bars = {s["name"]: s["data"] for s in gross["series"]}
    assert [d for d, _ in bars["gross"]] == [_day(n) for n in range(89, -1, -1)]
    assert [(d, v) for d, v in bars["gross"] if v] == [(_day(8), 50.0), (_day(3), 179.4)]
    assert [(d, v) for d, v in bars["chargebacks"] if v] == [(_day(5), 50.0)]
    net = _option(page, "chart-net")["series"][0]["data"]
    assert len(net) == 90 and sum(1 for _, v in net if v == 0) == 87

    # The filter narrows every chart: no MRR, no subscribers, fewer charges in the rate months.
    narrow = _state(page, "coursebridgeRevenue")
    assert narrow["product"] == "5001"
    assert all(v == 0 for v in _option(page, "chart-mrr")["series"][0]["data"])
    churn = {s["name"]: s["data"] for s in _option(page, "chart-churn")["series"]}
    assert all(v == 0 for v in churn["active subscribers"]) and all(v == 0 for v in churn["new subscribers"])
    assert sum(r["purchases"] for r in narrow["rates"]) == 2  # the two BRL sales
    assert sum(r["purchases"] for r in state["rates"]) > 2
    assert sum(v for _, v in narrow["series"]["gross"]) < sum(v for _, v in state["series"]["gross"])
    page.screenshot(path=str(shots / "revenue-product.png"), full_page=True)

    # Converted totals only with the owner's rates, beside the per-currency tiles (which do not change).
    assert page.locator("#converted").is_hidden()
    page.select_option("#report", "BRL")
    page.wait_for_url(re.compile(r".*report=BRL.*"))
    _rendered(page)
    converted = page.locator("#converted").inner_text()
    assert "Converted into BRL" in converted and "gross 729.40 BRL, net 679.40 BRL" in converted
    assert "no rate" not in converted  # the one USD day had its rate
    assert _tile(page, "gross", "BRL") == "229.40 BRL" and _tile(page, "gross", "USD") == "100.00 USD"
    page.select_option("#report", "")
    page.wait_for_url(re.compile(r".*report=(&|$).*"))
    _rendered(page)

    # The subscription product: MRR; the charts in USD on request.
    page.select_option("#product", "4711")
    page.wait_for_url(re.compile(r".*product=4711.*"))
    _rendered(page)
    assert any(v > 0 for v in _option(page, "chart-mrr")["series"][0]["data"])
    page.select_option("#currency", "USD")
    page.wait_for_url(re.compile(r".*currency=USD.*"))
    _rendered(page)
    assert _state(page, "coursebridgeRevenue")["currency"] == "USD"
    assert page.locator("#chart-net").locator("xpath=..").locator(".unit").inner_text() == "(USD)"

    # Presets change the range and keep the product.
    for preset, days in (("7d", {7}), ("30d", {30}), ("12m", {365, 366})):
        page.click(f"[data-range='{preset}']")
        page.wait_for_url(re.compile(rf".*range={preset}.*"))
        _rendered(page)
        drawn = _state(page, "coursebridgeRevenue")
        assert len(drawn["labels"]) in days and drawn["to"] == _day(0) and drawn["product"] == "4711"
        assert len(_option(page, "chart-net")["series"][0]["data"]) == len(drawn["labels"])
        assert page.locator(f"[data-range='{preset}']").get_attribute("aria-current") == "true"
    assert page.evaluate("window.__csp") == []
    assert ADMIN_TOKEN not in page.content()

    # Analytics down: the page still renders and says what is missing, instead of blank charts.
    from console.bootstrap import build_app
    from console.config import ConsoleSettings, derived_secret_key

    cut_off = build_app(
        ConsoleSettings(
            admin_token=ADMIN_TOKEN,
            urls={**seeded.urls, "analytics": f"http://127.0.0.1:{free_port()}"},
            secret_key=derived_secret_key(ADMIN_TOKEN),
            timeout=2,
        )
    )
    seen["consoles"].append(seeded._serve(cut_off))
    page.goto(f"{seen['consoles'][-1]}/revenue")
    page.wait_for_selector("body[data-rendered=error]", timeout=20000)
    assert "analytics: analytics is not reachable" in page.locator("p.flash.bad").inner_text()
    assert (
        page.locator("#status").inner_text() == "Could not load: analytics: not reachable (ConnectionError)"
    )


def _known_learning() -> list:
    """What the buyers of product 5001 did on TalentLMS: HPC1 signed in 2 h after buying and completed the
    course a day later; HPC2 signed in after 26 h; HPC3 only signed in after its refund (never started)."""
    bought, bought_hpc3 = NOW - timedelta(days=3), NOW - timedelta(days=8)

    def act(kind: str, transaction: str, at, course: str | None = None):
        return learning_event(
            kind,
            activity_id=f"la-{kind}-{transaction}",
            at=at,
            lms_user_id=f"u-{transaction}",
            purchases=[(transaction, "5001")],
            course_id=course,
        )

    return [
        act("signed_in", "HPC1", bought + timedelta(hours=2)),
        act("course_completed", "HPC1", bought + timedelta(days=1), "7"),
        act("signed_in", "HPC2", bought + timedelta(hours=26)),
        act("signed_in", "HPC3", bought_hpc3 + timedelta(hours=36)),  # the refund came 24 h after buying
    ]


def test_learning_page_with_real_analytics(seeded, browser_page, shots):
    """Against analytics' own learning views (when it serves them): the empty state before any learning
    activity, then known activity drawn and tabled for product 5001."""
    page, url, seen = browser_page

    page.goto(f"{url}/learning")
    _rendered(page)
    assert page.locator("#learning").is_hidden()
    assert "No learning activity has been read yet" in page.locator("#learning-empty").inner_text()
    assert page.locator("#learning-unserved").is_hidden()
    page.screenshot(path=str(shots / "learning-empty.png"), full_page=True)

    sampled = [e for e in learning_events_for(seeded.sample_payments) if e.time <= NOW]  # none to come
    assert seeded.record_events(sampled + _known_learning()) > 0
    page.goto(f"{url}/learning")
    _rendered(page)
    assert page.locator("#learning").is_visible() and page.locator("#learning-empty").is_hidden()
    everyone = _state(page, "coursebridgeLearning")
    assert {r["product_id"] for r in everyone["cohorts"]} >= {"4711", "4712", "4713", "5001"}
    assert any(r["started"] for r in everyone["cohorts"] if r["product_id"] != "5001")
    page.screenshot(path=str(shots / "learning.png"), full_page=True)

    page.select_option("#product", "5001")
    page.wait_for_url(re.compile(r".*product=5001.*"))
    _rendered(page)
    state = _state(page, "coursebridgeLearning")
    months = state["months"]
    recent, older = _month_of(3), _month_of(8)
    if recent == older:
        expected = {recent: (3, 2, 1, 14.0)}
    else:  # HPC3 was bought in the month before
        expected = {recent: (2, 2, 1, 14.0), older: (1, 0, 0, None)}
    got = {
        r["cohort_month"]: (r["buyers"], r["started"], r["completed"], r["first_access_hours_median"])
        for r in state["cohorts"]
    }
    assert got == expected
    completion = {s["name"]: s["data"] for s in _option(page, "chart-completion")["series"]}
    buyers, started, completed, _hours = expected[recent]
    assert completion["5001 completed %"][months.index(recent)] == round(100 * completed / buyers, 2)
    assert completion["5001 started %"][months.index(recent)] == round(100 * started / buyers, 2)
    first_access = {s["name"]: s["data"] for s in _option(page, "chart-first-access")["series"]}
    assert first_access["5001"][months.index(recent)] == 14.0  # the median of 2 h and 26 h
    refunds = {s["name"]: s["data"] for s in _option(page, "chart-refunds")["series"]}
    assert refunds == {"5001": [100.0, 0.0, 0.0]}  # HPC3's sign-in after the refund does not count
    rows = page.locator("#refunds tbody tr[data-bucket=never_started]").inner_text()
    assert "100.0 %" in rows
    gaps = [v for m, v in zip(months, completion["5001 completed %"], strict=True) if m not in expected]
    assert gaps and all(v is None for v in gaps)  # a month without a cohort is a gap, not 0 %
    assert {s["name"] for s in _option(page, "chart-completion")["series"]} == {
        "5001 completed %",
        "5001 started %",
    }
    assert page.evaluate("window.__csp") == []

    # A preset changes the range asked for and keeps the product.
    page.click("[data-range='7d']")
    page.wait_for_url(re.compile(r".*range=7d.*"))
    _rendered(page)
    week = _state(page, "coursebridgeLearning")
    assert (week["from"], week["to"], week["product"]) == (_day(6), _day(0), "5001")
    assert {r["cohort_month"] for r in week["cohorts"]} == {_month_of(n) for n in (0, 3, 6)} & set(expected)

    # An analytics that predates the learning views (404): the same plain message, not an error page.
    from console.bootstrap import build_app
    from console.config import ConsoleSettings, derived_secret_key

    older = build_app(
        ConsoleSettings(
            admin_token=ADMIN_TOKEN,
            urls={**seeded.urls, "analytics": seeded.urls["ingest"]},  # no /learning routes there
            secret_key=derived_secret_key(ADMIN_TOKEN),
        )
    )
    seen["consoles"].append(seeded._serve(older))
    page.goto(f"{seen['consoles'][-1]}/learning")  # the session cookie is the host's, whatever the port
    _rendered(page)
    assert "No learning activity has been read yet" in page.locator("#learning-empty").inner_text()
    assert page.locator("#learning-unserved").is_visible() and page.locator("#learning").is_hidden()


def _month_of(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).date().replace(day=1).isoformat()
