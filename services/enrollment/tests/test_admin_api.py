"""The enrollment HTTP API: product mappings (auth, validation, audit, catalogue events), parked
approvals and the student view."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coursebridge.adapters.sqlite_store import SqliteStore
from coursebridge.config import PlatformSettings
from coursebridge.events.catalogue import PRODUCT_MAPPED, PRODUCT_UNMAPPED
from coursebridge.events.contracts import validate_event
from coursebridge.events.envelope import Event
from enrollment.adapters.memory_lms import InMemoryLearningPlatform
from enrollment.bootstrap import build_api
from enrollment.config import EnrollmentSettings
from enrollment.service_layer.handlers import payments_dispatcher, redrive_parked
from enrollment.service_layer.saga import Saga

sys.path.insert(0, str(Path(__file__).parent))
from saga_support import ADMIN_TOKEN, delivery, payment_event

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def store(tmp_path: Path):
    store = SqliteStore("enrollment", tmp_path / "enrollment.sqlite3")
    yield store
    store.close()


@pytest.fixture
def client(tmp_path: Path, store: SqliteStore):
    settings = EnrollmentSettings(
        platform=PlatformSettings(backend="embedded", data_dir=tmp_path, service_name="enrollment"),
        admin_token=ADMIN_TOKEN,
    )
    return build_api(settings, store=store).test_client()


def catalogue_events(store: SqliteStore) -> list[Event]:
    entries = [d.data for d in store.query("outbox", order_by="sequence")]
    return [Event.from_json(e["event"]) for e in entries if e["topic"] == "catalogue"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/admin/products/4711"),
        ("get", "/admin/products/4711"),
        ("delete", "/admin/products/4711"),
        ("get", "/admin/products"),
        ("get", "/admin/parked"),
        ("get", "/students/ana@example.com/enrollments"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic " + ADMIN_TOKEN, f"Bearer{ADMIN_TOKEN}"])
def test_every_route_needs_the_bearer_token(client, method: str, path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = getattr(client, method)(path, json={"course_ids": ["7"]}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_mapping_lifecycle_is_audited_and_announced(client, store) -> None:
    body = {"course_ids": ["7", "9"], "plans": {"101": ["7"]}, "access_days": None, "grace_days": 7}
    created = client.put("/admin/products/4711", json=body, headers=AUTH)
    assert created.status_code == 201
    assert created.get_json()["revision"] == 1
    assert client.put("/admin/products/4711", json=body, headers=AUTH).status_code == 200  # unchanged
    changed = client.put("/admin/products/4711", json={**body, "course_ids": ["7"]}, headers=AUTH)
    assert changed.status_code == 200
    assert changed.get_json()["revision"] == 2
    got = client.get("/admin/products/4711", headers=AUTH).get_json()
    assert (got["course_ids"], got["plans"], got["grace_days"]) == (["7"], {"101": ["7"]}, 7)
    assert [p["product_id"] for p in client.get("/admin/products", headers=AUTH).get_json()["products"]] == [
        "4711"
    ]
    deleted = client.delete("/admin/products/4711", headers=AUTH)
    assert deleted.status_code == 200
    assert client.get("/admin/products/4711", headers=AUTH).status_code == 404
    assert client.delete("/admin/products/4711", headers=AUTH).status_code == 404
    assert client.get("/admin/products", headers=AUTH).get_json()["products"] == []
    recreated = client.put("/admin/products/4711", json=body, headers=AUTH)
    assert (recreated.status_code, recreated.get_json()["revision"]) == (201, 4)

    audit = client.get("/admin/products/4711/audit", headers=AUTH).get_json()["audit"]
    assert [(a["action"], a["revision"]) for a in audit] == [
        ("product.mapped", 1),
        ("product.mapped", 2),
        ("product.unmapped", 3),
        ("product.mapped", 4),
    ]
    assert audit[1]["before"]["course_ids"] == ["7", "9"]
    assert audit[1]["after"]["course_ids"] == ["7"]
    assert all(a["at"].endswith("Z") for a in audit)

    events = catalogue_events(store)
    assert [(e.type, e.data["revision"]) for e in events] == [
        (PRODUCT_MAPPED, 1),
        (PRODUCT_MAPPED, 2),
        (PRODUCT_UNMAPPED, 3),
        (PRODUCT_MAPPED, 4),
    ]
    for event in events:
        validate_event(event)
    assert events[2].data["removed"] is True
    assert {d.data["ordering_key"] for d in store.query("outbox")} == {"product:4711"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (None, "must be JSON"),
        ({"course_ids": "7"}, "course_ids must be a list"),
        ({"plans": {"101": ["7"]}}, "course_ids is required"),
        ({"course_ids": ["7"], "access_days": -1}, "access_days"),
        ({"course_ids": ["7"], "extra": 1}, "unknown field"),
    ],
)
def test_bad_bodies_get_400_with_a_message(client, store, body, fragment: str) -> None:
    if body is None:
        response = client.put("/admin/products/4711", data="not json", headers=AUTH)
    else:
        response = client.put("/admin/products/4711", json=body, headers=AUTH)
    assert response.status_code == 400
    assert fragment in response.get_json()["message"]
    assert store.query("outbox") == []
    assert store.query("audit") == []


def test_bad_product_id_and_email(client) -> None:
    assert client.put("/admin/products/47%2011", json={"course_ids": ["7"]}, headers=AUTH).status_code == 400
    response = client.get("/students/not-an-email/enrollments", headers=AUTH)
    assert response.status_code == 400
    assert "e-mail" in response.get_json()["message"]


def test_parked_approvals_are_visible_and_redriven_after_the_mapping(client, store) -> None:
    lms = InMemoryLearningPlatform()
    saga = Saga(store, lms)
    payments_dispatcher(saga)(payment_event(transaction="HP7", product="4712"), delivery())
    parked = client.get("/admin/parked", headers=AUTH).get_json()["parked"]
    assert [(p["product_id"], p["access_id"]) for p in parked] == [("4712", "tx:HP7")]
    assert client.get("/admin/parked?product_id=4711", headers=AUTH).get_json()["parked"] == []
    assert client.put("/admin/products/4712", json={"course_ids": ["11"]}, headers=AUTH).status_code == 201
    assert redrive_parked(saga) == 1  # what the worker's loop does
    assert client.get("/admin/parked", headers=AUTH).get_json()["parked"] == []
    assert lms.enrolled("ana.souza@example.com") == {"11"}

    courses = client.get("/students/Ana.Souza@example.com/enrollments", headers=AUTH).get_json()[
        "enrollments"
    ]
    assert len(courses) == 1
    course = courses[0]
    assert (course["course_id"], course["status"], course["granted_by"]) == ("11", "enrolled", "tx:HP7")
    assert course["sources"][0]["transaction"] == "HP7"
    assert course["enrolled_at"].endswith("Z")
    empty = client.get("/students/nobody@example.com/enrollments", headers=AUTH).get_json()
    assert empty == {"enrollments": []}
