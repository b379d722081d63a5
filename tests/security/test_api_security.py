"""Security checks of every HTTP API, in process (Flask test clients on the embedded backend).

- hottok: missing, wrong, almost right (prefix, suffix, case, inner whitespace, control characters), the
  old token after rotation removed -> 401 and nothing stored; the current and (during rotation) the
  previous one -> accepted.
- bearer-guarded APIs (webhook status, enrollment admin + student, subscription sweep + read, analytics
  revenue when it exists): no token, wrong token, wrong scheme -> 401.
- path injection in emails and ids (``../``, ``%2F``, NUL, very long, unicode) -> 4xx, never 5xx, and
  no traversal: the embedded data directory holds exactly the files it held before.
- oversized bodies -> 413 on every POST / PUT endpoint.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coursebridge.backends import open_store
from coursebridge.config import PlatformSettings

HOTTOK = "sec-hottok-Current-7f3a9c"
OLD_HOTTOK = "sec-hottok-Previous-2b8d1e"
ADMIN = "sec-admin-token-c4e9a1"
MIB = 1024 * 1024


def approval() -> dict[str, Any]:
    from importlib import resources

    body = json.loads(
        resources.files("ingest.samples").joinpath("purchase_approved_one_off.json").read_text()
    )
    body["id"] = str(uuid.uuid4())
    return body


@pytest.fixture
def platform(tmp_path: Path) -> PlatformSettings:
    return PlatformSettings(backend="embedded", data_dir=tmp_path / "data", service_name="security")


@pytest.fixture
def ingest(platform: PlatformSettings):
    from ingest.bootstrap import build_api
    from ingest.config import IngestSettings

    app = build_api(IngestSettings(platform=platform, hottoks=(HOTTOK,), admin_token=ADMIN))
    return app.test_client()


@pytest.fixture
def ingest_store(platform: PlatformSettings) -> Iterator[Any]:
    store = open_store(platform, "ingest")
    yield store
    store.close()


def stored(store) -> tuple[int, int]:
    return len(store.query("webhooks", [])), len(store.query("quarantine", []))


def post_hotmart(client, body: bytes, hottok: str | None):
    headers = {"Content-Type": "application/json"}
    if hottok is not None:
        headers["X-HOTMART-HOTTOK"] = hottok
    return client.post("/webhooks/hotmart", data=body, headers=headers)


# --- hottok -----------------------------------------------------------------------------------------------

ALMOST = [
    None,
    "",
    "wrong",
    HOTTOK[:-1],  # prefix
    HOTTOK + "x",  # suffix
    "x" + HOTTOK,
    HOTTOK.upper(),
    HOTTOK.lower(),
    HOTTOK.swapcase(),
    HOTTOK[: len(HOTTOK) // 2] + " " + HOTTOK[len(HOTTOK) // 2 :],  # inner whitespace
    HOTTOK + "\t" + HOTTOK,
    f"{HOTTOK},{OLD_HOTTOK}",  # the config's list syntax is not a header value
    HOTTOK.replace("a", "а"),  # Cyrillic a  # noqa: RUF001
    OLD_HOTTOK,  # rotated out
]


@pytest.mark.parametrize("presented", ALMOST, ids=lambda v: repr(v)[:30])
def test_wrong_or_almost_right_hottok_is_401_and_stores_nothing(ingest, ingest_store, presented) -> None:
    before = stored(ingest_store)
    for body in (json.dumps(approval()).encode(), b"not json at all"):
        response = post_hotmart(ingest, body, presented)
        assert response.status_code == 401, (presented, response.status_code, response.data[:200])
    assert stored(ingest_store) == before


def test_rotation_accepts_both_then_only_the_new_one(platform: PlatformSettings, ingest_store) -> None:
    from ingest.bootstrap import build_api
    from ingest.config import IngestSettings

    rotating = build_api(IngestSettings(platform=platform, hottoks=(HOTTOK, OLD_HOTTOK), admin_token=ADMIN))
    for token in (HOTTOK, OLD_HOTTOK):
        answer = post_hotmart(rotating.test_client(), json.dumps(approval()).encode(), token)
        assert answer.status_code == 200 and answer.json["status"] == "accepted"
    rotated = build_api(IngestSettings(platform=platform, hottoks=(HOTTOK,), admin_token=ADMIN)).test_client()
    before = stored(ingest_store)
    assert post_hotmart(rotated, json.dumps(approval()).encode(), OLD_HOTTOK).status_code == 401
    assert stored(ingest_store) == before
    assert post_hotmart(rotated, json.dumps(approval()).encode(), HOTTOK).status_code == 200


def test_a_hottok_inside_the_body_does_not_authenticate(ingest, ingest_store) -> None:
    body = approval()
    body["hottok"] = HOTTOK
    assert post_hotmart(ingest, json.dumps(body).encode(), None).status_code == 401
    assert stored(ingest_store) == (0, 0)


# --- bearer-guarded APIs ----------------------------------------------------------------------------------


@pytest.fixture
def enrollment(platform: PlatformSettings):
    from coursebridge.backends import open_store
    from enrollment.bootstrap import build_api
    from enrollment.config import EnrollmentSettings
    from enrollment.service_layer.courses import COURSES_DOC
    from enrollment.service_layer.repository import LMS_STATE

    store = open_store(platform, "enrollment")
    # What the worker stores once it has read TalentLMS's course list (mappings are checked against it).
    store.set(LMS_STATE, COURSES_DOC, {"courses": [{"id": "12", "name": "Sheets"}], "fetched_at": "x"})
    return build_api(EnrollmentSettings(platform=platform, admin_token=ADMIN), store=store).test_client()


@pytest.fixture
def subscription(platform: PlatformSettings):
    from subscription.bootstrap import build_api
    from subscription.config import SubscriptionSettings

    return build_api(SubscriptionSettings(platform=platform, admin_token=ADMIN)).test_client()


GUARDED = {
    "ingest": [("GET", "/webhooks/hotmart/00000000-feed-4000-8000-000000000020")],
    "enrollment": [
        ("PUT", "/admin/products/4712"),
        ("GET", "/admin/products/4712"),
        ("DELETE", "/admin/products/4712"),
        ("GET", "/admin/products"),
        ("GET", "/admin/products/4712/audit"),
        ("GET", "/admin/parked"),
        ("GET", "/students/ana.souza@example.com/enrollments"),
    ],
    "subscription": [("POST", "/tasks/sweep"), ("GET", "/subscriptions/SUB-A1B2C3")],
}
BAD_AUTH = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {ADMIN[:-1]}"},
    {"Authorization": f"Bearer {ADMIN}x"},
    {"Authorization": f"Bearer {ADMIN.upper()}"},
    {"Authorization": f"Basic {ADMIN}"},
    {"Authorization": ADMIN},
    {"Authorization": f"Bearer {HOTTOK}"},  # another secret of the system
    {"X-HOTMART-HOTTOK": HOTTOK},
]


@pytest.mark.parametrize("service", sorted(GUARDED))
def test_operator_apis_refuse_missing_or_wrong_bearer_tokens(request, service: str) -> None:
    client = request.getfixturevalue(service)
    for method, path in GUARDED[service]:
        for headers in BAD_AUTH:
            response = client.open(path, method=method, headers=headers, json={"course_ids": ["12"]})
            assert response.status_code == 401, (service, method, path, headers, response.status_code)
        ok = client.open(path, method=method, headers={"Authorization": f"Bearer {ADMIN}"}, json={})
        assert ok.status_code != 401, (service, method, path)


def test_operator_apis_without_a_configured_token_refuse_everyone(platform: PlatformSettings) -> None:
    from enrollment.bootstrap import build_api
    from enrollment.config import EnrollmentSettings

    client = build_api(EnrollmentSettings(platform=platform, admin_token=None)).test_client()
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
        assert client.get("/admin/products", headers=headers).status_code == 401


def test_revenue_api_refuses_missing_or_wrong_tokens(
    platform: PlatformSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("analytics.entrypoints.api") is None:
        pytest.skip("analytics has no HTTP API yet (analytics.entrypoints.api): nothing to check")
    from analytics.entrypoints import api

    monkeypatch.setenv("COURSEBRIDGE_BACKEND", "embedded")
    monkeypatch.setenv("COURSEBRIDGE_DATA_DIR", str(platform.data_dir))
    monkeypatch.setenv("ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("ANALYTICS_PSEUDONYM_KEY", "sec-pseudonym-key-0123456789abcdef")
    app = api.create_app()
    client = app.test_client()
    routes = [r.rule for r in app.url_map.iter_rules() if r.rule not in ("/healthz", "/readyz", "/metrics")]
    routes = [r for r in routes if "<" not in r and not r.startswith("/static") and r != "/openapi.yaml"]
    assert routes, "the analytics API has no routes to check"
    routes += [
        "/views/mrr_monthly",
        "/revenue/daily?from=2025-01-01&to=2025-01-31",
    ]
    for route in routes:
        for headers in BAD_AUTH:
            assert client.get(route, headers=headers).status_code == 401, (route, headers)


# --- path injection ---------------------------------------------------------------------------------------

INJECTIONS = [
    "../../../../etc/passwd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "ana%00@example.com",
    "ana\x00@example.com",
    "ana@example.com/../../x",
    "ana@example.com%2F..%2F..",
    "a" * 5000 + "@example.com",
    "ñandú.çé@exämple.com",
    "😀@example.com",
    "ana@example.com'; DROP TABLE webhooks;--",
    "%252e%252e%252f",
    "\\..\\..\\windows",
    "items",  # valid ids that look like internals: any answer but 5xx, and still no file touched
    "__proto__",
]
VALID_LOOKING = {"items", "__proto__"}


def data_files(platform: PlatformSettings) -> set[str]:
    return {str(p.relative_to(platform.data_dir)) for p in platform.data_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("value", INJECTIONS, ids=lambda v: repr(v)[:25])
def test_path_injection_is_4xx_never_5xx_and_touches_no_file(
    platform: PlatformSettings, ingest, enrollment, subscription, value: str
) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    for client in (ingest, enrollment, subscription):
        client.get("/healthz")
    files_before = data_files(platform)
    probes = [
        (ingest, "GET", f"/webhooks/hotmart/{value}", None),
        (enrollment, "GET", f"/students/{value}/enrollments", None),
        (enrollment, "GET", f"/admin/products/{value}", None),
        (enrollment, "GET", f"/admin/products/{value}/audit", None),
        (enrollment, "PUT", f"/admin/products/{value}", {"course_ids": ["12"]}),
        (enrollment, "DELETE", f"/admin/products/{value}", None),
        (enrollment, "GET", f"/admin/parked?product_id={value}", None),
        (subscription, "GET", f"/subscriptions/{value}", None),
    ]
    for client, method, path, body in probes:
        response = client.open(path, method=method, headers=auth, json=body)
        low = 200 if value in VALID_LOOKING else 400
        assert low <= response.status_code < 500, (
            method,
            path[:80],
            response.status_code,
            response.data[:200],
        )
    assert data_files(platform) == files_before, "a request created or removed a file"


# --- oversized bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [MIB + 1, 4 * MIB])
def test_oversized_webhook_is_413_and_stores_nothing(ingest, ingest_store, size: int) -> None:
    body = json.dumps({**approval(), "padding": "x" * size}).encode()
    response = post_hotmart(ingest, body, HOTTOK)
    assert response.status_code == 413
    assert stored(ingest_store) == (0, 0)


def test_oversized_product_mapping_is_413(enrollment) -> None:
    body = json.dumps({"course_ids": ["12"], "padding": "x" * (2 * MIB)})
    response = enrollment.put(
        "/admin/products/4712",
        data=body,
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert (
        enrollment.get("/admin/products/4712", headers={"Authorization": f"Bearer {ADMIN}"}).status_code
        == 404
    )


def test_oversized_sweep_request_is_413(subscription) -> None:
    response = subscription.post(
        "/tasks/sweep",
        data=b"x" * (2 * MIB),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
