"""The Revenue and Learning pages' data over HTTP: what the console answers is analytics' own answer for
the checked range and product; a down analytics costs only the figures, an older one (404 on the learning
views) reads as "no learning activity yet". The range rules themselves are pure (``console.domain.reports``).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import sign_in
from inproc_stack import ADMIN_TOKEN, free_port

from analytics.synthetic import generate_events
from console.domain.reports import BadQuery, preset_range, report_query

TODAY = date(2026, 3, 15)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, (date(2025, 12, 16), TODAY, "90d")),
        ({"range": "7d"}, (date(2026, 3, 9), TODAY, "7d")),
        ({"range": "30d"}, (date(2026, 2, 14), TODAY, "30d")),
        ({"range": "12m"}, (date(2025, 3, 16), TODAY, "12m")),
        ({"from": "2026-01-01", "to": "2026-01-31"}, (date(2026, 1, 1), date(2026, 1, 31), None)),
        # dates as the preset gives them keep the preset (the form sends both); edited dates drop it
        ({"range": "7d", "from": "2026-03-09", "to": "2026-03-15"}, (date(2026, 3, 9), TODAY, "7d")),
        ({"range": "7d", "from": "2026-03-01", "to": "2026-03-15"}, (date(2026, 3, 1), TODAY, None)),
    ],
)
def test_ranges(args, expected):
    query = report_query(args, TODAY)
    assert (query.start, query.end, query.preset) == expected


def test_twelve_months_from_a_leap_day_and_the_longest_range():
    assert preset_range("12m", date(2028, 2, 29)) == (date(2027, 3, 1), date(2028, 2, 29))
    longest = report_query({"from": "2024-01-01", "to": "2024-12-31"}, TODAY)  # 366 days: allowed
    assert longest.days == 366
    with pytest.raises(BadQuery, match="366 days"):
        report_query({"from": "2024-01-01", "to": "2025-01-01"}, TODAY)


def test_the_query_forwarded_to_analytics():
    query = report_query({"range": "30d", "product": "4711", "currency": "USD", "report": "EUR"}, TODAY)
    assert query.params() == {"from": "2026-02-14", "to": "2026-03-15", "product": "4711"}
    assert (query.currency, query.report) == ("USD", "EUR")
    assert report_query({"product": "  "}, TODAY).product is None


@pytest.fixture(scope="module")
def seeded(stack):
    start = datetime.now(UTC) - timedelta(days=60)
    stack.record_events(list(generate_events(200, seed=11, start=start, days=60)))
    return stack


def test_revenue_data_is_analytics_answer_for_the_range_and_product(seeded, operator):
    end = date.today()
    start = end - timedelta(days=29)
    query = f"from={start}&to={end}&product=4712"
    mine = operator.get(seeded.urls["console"] + f"/revenue/data?{query}", timeout=10)
    assert mine.status_code == 200
    body = mine.json()
    analytics = {
        "daily": f"/revenue/daily?{query}",
        "summary": f"/revenue/summary?{query}",
        "mrr": f"/views/mrr_monthly?{query}",
        "churn": f"/views/churn_monthly?{query}",
        "rates": f"/views/refund_rates_monthly?{query}",
    }
    for name, path in analytics.items():
        assert body[name] == seeded.admin("analytics", "GET", path).json(), name
    assert body["summary"]["currencies"] and body["summary"]["product"] == "4712"
    assert (body["from"], body["to"], body["product"]) == (str(start), str(end), "4712")


def _console(urls: dict[str, str], timeout: float = 10.0):
    from console.bootstrap import build_app
    from console.config import ConsoleSettings, derived_secret_key

    settings = ConsoleSettings(
        admin_token=ADMIN_TOKEN, urls=urls, secret_key=derived_secret_key(ADMIN_TOKEN), timeout=timeout
    )
    client = build_app(settings).test_client()
    with client.session_transaction() as session:
        session["operator"] = "maria"
    return client


def test_learning_data_when_analytics_does_not_serve_it_yet(seeded):
    # ingest stands in for an analytics that predates the learning views: 404 on those routes
    client = _console({**seeded.urls, "analytics": seeded.urls["ingest"]})
    answer = client.get("/learning/data?range=30d")
    assert answer.status_code == 200 and answer.json["available"] is False
    assert client.get("/learning").status_code == 200


def test_a_down_analytics_costs_the_figures_not_the_page(seeded):
    client = _console({**seeded.urls, "analytics": f"http://127.0.0.1:{free_port()}"}, timeout=2)
    for route in ("/revenue/data?range=7d", "/learning/data?range=7d"):
        answer = client.get(route)
        assert answer.status_code == 502
        assert answer.json["message"] == "analytics: not reachable (ConnectionError)"
    page = client.get("/revenue")
    assert page.status_code == 200
    assert "analytics: analytics is not reachable — this part of the page is missing" in page.get_data(
        as_text=True
    )


def test_the_pages_render_for_a_signed_in_operator(seeded):
    http = sign_in(seeded.urls["console"], "pages-check")
    for path, title in (("/revenue", "Revenue"), ("/learning", "Learning")):
        page = http.get(seeded.urls["console"] + path, timeout=10)
        assert page.status_code == 200 and f"<h1>{title}</h1>" in page.text
        assert "/static/vendor/echarts/echarts.min.js" in page.text
        assert "4712" in page.text  # the product filter offers what analytics has seen
    licence = http.get(seeded.urls["console"] + "/static/vendor/echarts/LICENSE", timeout=10)
    assert licence.status_code == 200 and "Apache License" in licence.text


def test_no_token_or_buyer_in_the_logs_of_the_pages_and_their_data(seeded, operator, caplog, capfd):
    url = seeded.urls["console"]
    caplog.set_level(logging.DEBUG)
    capfd.readouterr()
    for path in (
        "/revenue",
        "/revenue/data?range=90d",
        "/revenue/data?range=12m&product=4711&report=EUR",
        "/revenue/data?from=2026-02-30&to=2026-03-01",
        "/revenue/data?range=7d&product=..%2Fadmin",
        "/learning",
        "/learning/data?range=30d&product=4713",
    ):
        assert operator.get(url + path, timeout=30).status_code in (200, 400)
    logged = caplog.text + "".join(capfd.readouterr())
    assert "/revenue/data" in logged  # the requests were logged (by route): the checks below mean something
    assert ADMIN_TOKEN not in logged
    assert "@example.com" not in logged.lower()  # the synthetic buyers are BuyerN@Example.com
    assert "from=" not in logged and "..%2Fadmin" not in logged  # routes are logged, never query strings


def test_vendored_echarts_is_the_pinned_release_with_its_licence():
    """The file the pages load is the one scripts/vendor_echarts.sh took from npm (tarball integrity checked
    there); a hand-edited or swapped file fails here."""
    import hashlib
    from importlib import resources

    folder = resources.files("console").joinpath("static", "vendor", "echarts")
    version, integrity = folder.joinpath("VERSION").read_text().split()
    assert integrity.startswith("sha512-")
    script = folder.joinpath("echarts.min.js").read_bytes()
    assert f'"{version}"'.encode() in script
    assert hashlib.sha256(script).hexdigest() == ECHARTS_MIN_JS_SHA256
    assert "Apache" in folder.joinpath("NOTICE").read_text()
    assert "Apache License" in folder.joinpath("LICENSE").read_text()


ECHARTS_MIN_JS_SHA256 = "b66b25aeb4df84e33199dc21694014d336d222cbd9deb0e5a7c14bd6aa0d0fd0"
