"""The enrollment HTTP API: product mappings (auth, validation against TalentLMS's courses, dry run, audit,
catalogue events), parked approvals, the LMS queue, resync, the drift audit and the student view."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coursebridge.adapters.sqlite_store import SqliteStore
from coursebridge.config import PlatformSettings
from coursebridge.events.catalogue import PRODUCT_MAPPED, PRODUCT_UNMAPPED
from coursebridge.events.contracts import validate_event
from coursebridge.events.envelope import Event
from enrollment.bootstrap import build_api
from enrollment.config import EnrollmentSettings
from enrollment.service_layer.courses import COURSES_DOC
from enrollment.service_layer.repository import LMS_STATE

sys.path.insert(0, str(Path(__file__).parent))
from controller_support import Harness
from saga_support import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


DEMO_COURSES = [
    {"id": "7", "name": "Foundations"},
    {"id": "9", "name": "Advanced"},
    {"id": "11", "name": "Master"},
]


def seed_courses(store: SqliteStore) -> None:
    """What the worker's course-list refresh stores."""
    store.set(LMS_STATE, COURSES_DOC, {"courses": DEMO_COURSES, "fetched_at": "2026-01-01T00:00:00.000Z"})


@pytest.fixture
def store(tmp_path: Path):
    store = SqliteStore("enrollment", tmp_path / "enrollment.sqlite3")
    seed_courses(store)
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
        ("get", "/admin/lms/courses"),
        ("get", "/admin/lms/queue"),
        ("get", "/admin/students/failed"),
        ("post", "/admin/students/ana@example.com/resync"),
        ("get", "/admin/audit/last"),
        ("post", "/admin/audit"),
        ("get", "/admin/learning"),
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


def test_parked_approvals_are_visible_and_granted_after_the_mapping(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    seed_courses(h.store)
    client = _client(tmp_path, h)
    h.pay(transaction="HP7", product="4712")
    h.drain()
    parked = client.get("/admin/parked", headers=AUTH).get_json()["parked"]
    assert [(p["product_id"], p["access_id"]) for p in parked] == [("4712", "tx:HP7")]
    assert client.get("/admin/parked?product_id=4711", headers=AUTH).get_json()["parked"] == []
    view = client.get("/students/ana.souza@example.com/enrollments", headers=AUTH).get_json()
    assert view["parked"][0]["reason"].startswith("parked: product 4712 is not mapped to any course (since ")

    assert client.put("/admin/products/4712", json={"course_ids": ["11"]}, headers=AUTH).status_code == 201
    h.drain()  # what the worker's dispatcher does

    assert client.get("/admin/parked", headers=AUTH).get_json()["parked"] == []
    assert h.lms.enrolled("ana.souza@example.com") == {"11"}
    view = client.get("/students/Ana.Souza@example.com/enrollments", headers=AUTH).get_json()
    [course] = view["enrollments"]
    assert (course["course_id"], course["status"], course["granted_by"]) == ("11", "enrolled", ["tx:HP7"])
    assert "link" not in course  # a link costs a TalentLMS call: only when asked for
    links_before = h.lms.calls["course_link"]
    linked = client.get("/students/ana.souza@example.com/enrollments?links=true", headers=AUTH).get_json()
    assert linked["enrollments"][0]["link"].startswith("https://")  # one click into the course, fetched now
    assert h.lms.calls["course_link"] == links_before + 1
    assert view["sources"][0]["transaction"] == "HP7"
    empty = client.get("/students/nobody@example.com/enrollments", headers=AUTH).get_json()
    assert (empty["email_known"], empty["enrollments"]) == (False, [])
    h.close()


def _client(tmp_path: Path, h: Harness):
    settings = EnrollmentSettings(
        platform=PlatformSettings(backend="embedded", data_dir=tmp_path, service_name="enrollment"),
        admin_token=ADMIN_TOKEN,
    )
    return build_api(settings, store=h.store, lms=h.lms).test_client()


def test_a_course_talentlms_does_not_have_is_refused(client, store) -> None:
    response = client.put("/admin/products/4711", json={"course_ids": ["7", "404"]}, headers=AUTH)

    assert response.status_code == 422
    assert response.get_json()["course_ids"] == ["404"]
    assert store.get("products", "4711") is None
    assert store.get(LMS_STATE, COURSES_DOC)["refresh_requested"] is True  # maybe created a minute ago


def test_without_the_course_list_a_mapping_waits(client, store) -> None:
    store.delete(LMS_STATE, COURSES_DOC)

    response = client.put("/admin/products/4711", json={"course_ids": ["7"]}, headers=AUTH)

    assert response.status_code == 503
    assert "not loaded yet" in response.get_json()["message"]


def test_the_course_picker_lists_talentlms_courses(client) -> None:
    body = client.get("/admin/lms/courses", headers=AUTH).get_json()
    assert [c["id"] for c in body["courses"]] == ["7", "9", "11"]


def test_a_dry_run_counts_gains_and_losses_and_changes_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    seed_courses(h.store)
    client = _client(tmp_path, h)
    h.map(body={"course_ids": ["7", "9"]})
    for n in range(3):
        h.pay(transaction=f"HP{n}", email=f"buyer{n}@example.com")
    h.pay("PURCHASE_REFUNDED", transaction="HP2", email="buyer2@example.com", second=30)
    h.drain()
    revision = client.get("/admin/products/4711", headers=AUTH).get_json()["revision"]

    preview = client.put("/admin/products/4711?dry_run=true", json={"course_ids": ["7", "11"]}, headers=AUTH)

    assert preview.status_code == 200
    body = preview.get_json()
    assert body["students_with_access"] == 3
    assert (body["students_gaining"], body["students_losing"]) == (2, 2)
    assert body["courses"] == {"9": {"gain": 0, "lose": 2}, "11": {"gain": 2, "lose": 0}}
    assert client.get("/admin/products/4711", headers=AUTH).get_json()["revision"] == revision
    removal = client.delete("/admin/products/4711?dry_run=true", headers=AUTH).get_json()
    assert removal["courses"] == {"7": {"gain": 0, "lose": 2}, "9": {"gain": 0, "lose": 2}}
    assert client.get("/admin/products/4711", headers=AUTH).status_code == 200
    h.close()


def test_the_operator_is_named_in_the_audit(client) -> None:
    headers = {**AUTH, "X-CourseBridge-Actor": "maria@console"}
    client.put("/admin/products/4711", json={"course_ids": ["7"]}, headers=headers)

    [entry] = client.get("/admin/products/4711/audit", headers=AUTH).get_json()["audit"]
    assert entry["actor"] == "maria@console"


def test_resync_queues_a_known_student_and_the_queue_reports_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    seed_courses(h.store)
    client = _client(tmp_path, h)
    h.map()
    h.pay()
    h.drain()
    assert client.post("/admin/students/nobody@example.com/resync", headers=AUTH).status_code == 404

    response = client.post("/admin/students/ana.souza@example.com/resync", headers=AUTH)

    assert response.status_code == 202
    assert response.get_json()["queue"]["position"] == 1
    queue = client.get("/admin/lms/queue", headers=AUTH).get_json()
    assert queue["depth_now"] == 1
    assert "eta_seconds" in queue and "lanes" in queue
    h.drain()
    assert client.get("/admin/lms/queue", headers=AUTH).get_json()["depth_now"] == 0
    h.close()


def test_failed_students_are_listed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    seed_courses(h.store)
    client = _client(tmp_path, h)
    h.map(body={"course_ids": ["7", "404"]})
    h.pay()
    h.drain()

    [failed] = client.get("/admin/students/failed", headers=AUTH).get_json()["students"]

    assert failed["blocked"] == {"404": "The requested course does not exist"}
    h.close()


def test_the_drift_audit_is_requested_and_reported(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    seed_courses(h.store)
    client = _client(tmp_path, h)
    h.map()
    h.pay()
    h.drain()
    assert client.get("/admin/audit/last", headers=AUTH).status_code == 404
    user = h.lms.user_by_email("ana.souza@example.com")
    h.lms.unenroll_by_hand(user.id, "9")  # someone removed a paid course by hand

    assert client.post("/admin/audit", headers=AUTH).status_code == 202
    h.drain()
    h.dispatcher.run_round()
    h.drain()

    report = client.get("/admin/audit/last", headers=AUTH).get_json()
    assert report["counts"] == {"missing": 1, "extra": 0, "foreign": 0}
    assert h.lms.enrolled("ana.souza@example.com") == {"7", "9"}
    h.close()


def test_students_are_found_by_transaction(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    seed_courses(h.store)
    client = _client(tmp_path, h)
    h.pay(transaction="HP77", product="4712")
    h.drain()
    found = client.get("/admin/students?transaction=HP77", headers=AUTH).get_json()["students"]
    assert [(s["email"], s["access_id"]) for s in found] == [("ana.souza@example.com", "tx:HP77")]
    assert client.get("/admin/students?transaction=HP00", headers=AUTH).get_json() == {"students": []}
    assert client.get("/admin/students", headers=AUTH).status_code == 400
    assert client.get("/admin/students?transaction=HP77").status_code == 401


def test_the_learning_poll_state_is_shown(tmp_path: Path) -> None:
    h = Harness(tmp_path, learning_interval=900)
    seed_courses(h.store)
    client = _client(tmp_path, h)
    before = client.get("/admin/learning", headers=AUTH).get_json()
    h.map()
    h.pay()
    h.drain()
    user = h.lms.user_by_email("ana.souza@example.com")
    h.lms.sign_in(user.id, 1_800_000_000)
    h.lms.sign_in("4242", 1_800_000_001)  # a TalentLMS user CourseBridge does not know
    assert h.dispatcher.learning is not None
    h.dispatcher.learning.step()

    state = client.get("/admin/learning", headers=AUTH).get_json()

    assert before["watermarks"] == {"user_login_user": None, "course_completion": None}
    assert state["watermarks"]["user_login_user"]["at"] == "2027-01-15T08:00:01.000Z"
    assert state["watermarks"]["course_completion"] is None
    assert state["last_run"]["published"] == {"signed_in": 1, "course_completed": 0}
    assert state["last_run"]["unknown_users"] == 1 and state["hour"]["calls"] == 2
    assert "ana.souza" not in str(state)
    h.close()
