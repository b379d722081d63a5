"""Security: no page without a session, CSRF on every action, the admin token never reaches a browser,
and behind IAP only a valid signed assertion for the right audience gets in."""

from __future__ import annotations

import base64
import json
import time
import zlib

import pytest
import requests
from conftest import csrf_of, sign_in
from inproc_stack import ADMIN_TOKEN

from console.entrypoints.web import _safe_next

PAGES = [
    "/",
    "/buyer",
    "/buyer?q=ana@example.com",
    "/problems",
    "/products",
    "/products/4711",
    "/deadletters/enrollment/x",
    "/quarantine/x",
    "/revenue",
    "/revenue?range=7d&product=4711",
    "/learning",
]
# The pages' JSON (analytics' figures): 401 without a session, parameters checked before analytics is asked.
DATA = [
    "/revenue/data?from=2026-01-01&to=2026-01-31",
    "/learning/data?from=2026-01-01&to=2026-01-31&product=4711",
]
ACTIONS = [
    "/actions/resync",
    "/actions/quarantine/x/reprocess",
    "/actions/deadletters/enrollment/x/replay",
    "/actions/deadletters/subscription/x/discard",
    "/products/4711",
    "/products/4711/dry-run",
    "/products",
    "/signout",
]


def _routes(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((method, rule.rule))
    return out


def test_the_lists_below_cover_every_console_route(stack):
    open_routes = {"/signin", "/healthz", "/readyz", "/metrics", "/static/<path:filename>"}
    listed = {p.split("?")[0] for p in [*PAGES, *DATA]} | set(ACTIONS)
    for method, rule in _routes(stack.console_app):
        if rule in open_routes:
            continue
        example = (
            rule.replace("<service>", "enrollment").replace("<doc_id>", "x").replace("<product_id>", "4711")
        )
        example = example.replace("<verb>", "replay")
        assert example in listed or example.replace("enrollment", "subscription") in listed, (method, rule)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_a_session_redirects_to_sign_in(stack, path):
    response = requests.get(stack.urls["console"] + path, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/signin?next=")


@pytest.mark.parametrize("path", DATA)
def test_the_pages_data_without_a_session_is_401_and_holds_nothing(stack, path):
    response = requests.get(stack.urls["console"] + path, allow_redirects=False, timeout=10)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": "sign in again"}


@pytest.fixture(scope="module")
def recorded(stack):
    """A signed-in console whose every analytics call is recorded (the real analytics answers)."""
    from console.adapters.services import Services
    from console.bootstrap import build_app
    from console.config import ConsoleSettings, derived_secret_key

    services = Services.from_urls(stack.urls, ADMIN_TOKEN)
    calls: list[tuple[str, dict]] = []
    real = services.analytics.call

    def call(method, path, **kwargs):
        calls.append((path, dict(kwargs.get("params") or {})))
        return real(method, path, **kwargs)

    services.analytics.call = call
    settings = ConsoleSettings(
        admin_token=ADMIN_TOKEN, urls=dict(stack.urls), secret_key=derived_secret_key(ADMIN_TOKEN)
    )
    client = build_app(settings, services=services).test_client()
    with client.session_transaction() as session:
        session["operator"] = "recorder"
    return client, calls


BAD_QUERIES = [
    "from=2026-01-01",
    "to=2026-01-01",
    "from=2026-13-01&to=2026-12-31",
    "from=2026-02-30&to=2026-03-01",
    "from=2026-03-01&to=2026-02-01",
    "from=2020-01-01&to=2026-01-01",
    "from=20260101&to=20260102",
    "from=2026-01-01T00:00&to=2026-01-02",
    "range=5d",
    "range=90d&product=a%20b",
    "range=90d&product=..%2Fadmin",
    "range=90d&product=4711%26token%3Dx",
    "range=90d&product=" + "9" * 65,
    "range=90d&currency=brl",
    "range=90d&report=EURO",
]


@pytest.mark.parametrize("route", ["/revenue/data", "/learning/data"])
@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_parameters_are_refused_before_analytics_is_asked(recorded, route, query):
    client, calls = recorded
    calls.clear()
    response = client.get(f"{route}?{query}")
    assert response.status_code == 400, (route, query, response.json)
    assert response.json["error"] == "bad_request" and response.json["message"]
    assert calls == []


def test_good_parameters_go_to_analytics_as_they_were_checked(recorded):
    client, calls = recorded
    calls.clear()
    assert client.get("/revenue/data?range=7d&product=4711&report=EUR").status_code == 200
    asked = dict(calls)
    assert set(asked) == {
        "/revenue/daily",
        "/revenue/summary",
        "/views/mrr_monthly",
        "/views/churn_monthly",
        "/views/refund_rates_monthly",
    }
    assert asked["/revenue/summary"]["report"] == "EUR"
    assert all(p["product"] == "4711" and len(p) in (3, 4) for p in asked.values())
    calls.clear()
    assert client.get("/learning/data?from=2026-01-01&to=2026-03-31").status_code == 200
    assert dict(calls) == {
        "/learning/cohorts": {"from": "2026-01-01", "to": "2026-03-31"},
        "/learning/refunds-by-progress": {"from": "2026-01-01", "to": "2026-03-31"},
    }


def test_a_page_with_a_bad_query_says_so_and_shows_the_default_range(recorded):
    client, calls = recorded
    calls.clear()
    page = client.get("/revenue?from=2026-02-30&to=2026-03-01").get_data(as_text=True)
    assert calls == [("/revenue/options", {})]  # the filter's choices only; no figure for a bad range
    assert 'id="problem"' in page and "from must be a date as YYYY-MM-DD" in page
    assert 'data-range="90d"' in page and 'aria-current="true"' in page


@pytest.mark.parametrize("path", ACTIONS)
def test_every_action_without_a_session_redirects_to_sign_in(stack, path):
    response = requests.post(
        stack.urls["console"] + path, data={"email": "a@b.c"}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 302 and response.headers["Location"].startswith("/signin")


@pytest.mark.parametrize("path", ACTIONS)
def test_every_action_needs_the_csrf_token(stack, operator, path):
    response = operator.post(
        stack.urls["console"] + path, data={"email": "ana@example.com"}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 400
    assert "CSRF" in response.text
    bad = operator.post(
        stack.urls["console"] + path,
        data={"email": "a@b.c", "csrf_token": "forged"},
        allow_redirects=False,
        timeout=10,
    )
    assert bad.status_code == 400


def test_sign_in_refuses_a_wrong_token_and_a_missing_name(stack):
    url = stack.urls["console"]
    http = requests.Session()
    token = csrf_of(http.get(url + "/signin", timeout=10).text)
    wrong = http.post(
        url + "/signin", data={"csrf_token": token, "operator": "x", "token": "nope"}, timeout=10
    )
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    nameless = http.post(
        url + "/signin", data={"csrf_token": token, "operator": "", "token": ADMIN_TOKEN}, timeout=10
    )
    assert nameless.status_code == 401
    assert http.get(url + "/", allow_redirects=False, timeout=10).status_code == 302


def _cookie_payload(value: str) -> str:
    """A Flask session cookie is readable (signed, not encrypted): what does it hold?"""
    compressed = value.startswith(".")
    body = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return (zlib.decompress(raw) if compressed else raw).decode()


def test_no_token_in_any_page_url_header_or_cookie(stack):
    url = stack.urls["console"]
    http = sign_in(url, "no-leak-check")
    seen = []
    statics = ["/static/htmx.min.js", "/static/console.css", "/static/charts.js", "/static/revenue.js"]
    for path in [*PAGES[:6], *PAGES[-3:], *DATA, *statics, "/static/learning.js", "/signin"]:
        response = http.get(url + path, timeout=10)
        seen.append(response)
        seen += response.history
    for response in seen:
        assert ADMIN_TOKEN not in response.text, response.url
        assert ADMIN_TOKEN not in response.url
        assert all(ADMIN_TOKEN not in v for v in response.headers.values()), response.url
    for cookie in http.cookies:
        payload = _cookie_payload(cookie.value)
        assert ADMIN_TOKEN not in payload and "no-leak-check" in payload
        assert cookie.has_nonstandard_attr("HttpOnly")


def test_pages_are_locked_down_and_redirects_stay_on_the_console(stack, operator):
    response = operator.get(stack.urls["console"] + "/", timeout=10)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "https://" not in response.text.split("<main>")[0]  # no CDN: every asset is local
    for target in ("https://evil.example/x", "//evil.example", "javascript:alert(1)", "evil"):
        assert _safe_next(target) == "/"
    assert _safe_next("/buyer?q=a") == "/buyer?q=a"


# --- Identity-Aware Proxy ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iap_console(stack):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from google.auth import crypt, jwt

    from console.adapters.iap import IapVerifier

    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    signer = crypt.ES256Signer.from_string(private_pem, key_id="k1")
    audience = "/projects/123/global/backendServices/456"

    def assertion(
        aud: str = audience, email: str = "maria@school.example", iss: str = "https://cloud.google.com/iap"
    ):
        now = int(time.time())
        claims = {
            "aud": aud,
            "iss": iss,
            "email": email,
            "sub": "accounts.google.com:1",
            "iat": now,
            "exp": now + 600,
        }
        return jwt.encode(signer, claims).decode()

    from console.bootstrap import build_app
    from console.config import ConsoleSettings, derived_secret_key

    app = build_app(
        ConsoleSettings(
            admin_token=ADMIN_TOKEN,
            urls=dict(stack.urls),
            auth="iap",
            iap_audience=audience,
            secret_key=derived_secret_key(ADMIN_TOKEN),
        ),
        iap=IapVerifier(audience, fetch_certs=lambda: {"k1": public_pem}),
    )
    return app.test_client(), assertion


def test_behind_iap_only_a_valid_assertion_for_this_audience_gets_in(iap_console):
    client, assertion = iap_console
    assert client.get("/").status_code == 401
    headers = {"X-Goog-IAP-JWT-Assertion": assertion()}
    page = client.get("/", headers=headers)
    assert page.status_code == 200 and "maria@school.example" in page.get_data(as_text=True)
    assert (
        client.get("/", headers={"X-Goog-IAP-JWT-Assertion": assertion(aud="/projects/9/other")}).status_code
        == 401
    )
    assert (
        client.get("/", headers={"X-Goog-IAP-JWT-Assertion": assertion(iss="https://evil")}).status_code
        == 401
    )
    assert client.get("/", headers={"X-Goog-IAP-JWT-Assertion": assertion()[:-4] + "AAAA"}).status_code == 401
    assert client.get(DATA[0]).status_code == 401
    assert client.get(DATA[0], headers=headers).status_code == 200
    # CSRF still applies behind IAP
    assert client.post("/actions/resync", data={"email": "a@b.c"}, headers=headers).status_code == 400
    body = json.dumps(client.get("/problems", headers=headers).get_data(as_text=True))
    assert ADMIN_TOKEN not in body
