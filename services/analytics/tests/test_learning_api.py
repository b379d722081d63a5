"""GET /learning/cohorts and /learning/refunds-by-progress: token, parameter checks, and figures that equal
the plain-Python reference over the range."""

from __future__ import annotations

from datetime import date

import pytest

from analytics.bootstrap import build_api
from analytics.config import AnalyticsSettings
from analytics.service_layer.projector import project_events
from analytics.synthetic import generate_events, learning_events_for
from coursebridge.config import PlatformSettings

from . import reference
from .conftest import ADMIN_TOKEN, KEY

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ENDPOINTS = ("/learning/cohorts", "/learning/refunds-by-progress")


def _client(tmp_path, warehouse):
    settings = AnalyticsSettings(
        platform=PlatformSettings(data_dir=tmp_path, service_name="analytics"),
        pseudonym_key=KEY,
        admin_token=ADMIN_TOKEN,
    )
    return build_api(settings, warehouse=warehouse).test_client()


@pytest.fixture(scope="module")
def stream():
    payments = list(generate_events(800, seed=3))
    learning = learning_events_for(payments, seed=4)
    return payments + learning + learning[:40]  # redeliveries


@pytest.fixture
def client(tmp_path, warehouse, stream):
    project_events(warehouse, stream, KEY)
    return _client(tmp_path, warehouse)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_learning_needs_the_token(client, path):
    assert client.get(f"{path}?from=2025-01-01&to=2025-01-31").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get(f"{path}?from=2025-01-01&to=2025-01-31", headers=wrong).status_code == 401


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "query",
    [
        "",
        "from=2025-01-01",
        "from=2025-02-30&to=2025-03-01",
        "from=2025-03-01&to=2025-02-01",
        "from=2020-01-01&to=2025-01-01",
        "from=2025-01-01&to=2025-01-02&product=a%20b",
    ],
)
def test_bad_parameters_are_400(client, path, query):
    response = client.get(f"{path}?{query}", headers=AUTH)
    assert response.status_code == 400 and response.json["error"] == "bad_request"


def test_cohorts_are_the_months_overlapping_the_range(client, stream):
    body = client.get("/learning/cohorts?from=2025-02-10&to=2025-04-05", headers=AUTH).json
    expected = reference.learning_cohorts(stream)
    months = {"2025-02-01", "2025-03-01", "2025-04-01"}
    assert {(r["product_id"], r["cohort_month"]) for r in body["rows"]} == {
        k for k in expected if k[1] in months
    }
    for row in body["rows"]:
        want = expected[(row["product_id"], row["cohort_month"])]
        assert set(row) == {
            "product_id",
            "cohort_month",
            "buyers",
            "started",
            "completed",
            "started_rate",
            "completion_rate",
            "first_access_hours_median",
        }
        assert (row["buyers"], row["started"], row["completed"]) == (
            want["buyers"],
            want["started"],
            want["completed"],
        )
        assert row["completion_rate"] == pytest.approx(want["completion_rate"])
        assert row["first_access_hours_median"] == pytest.approx(want["first_access_hours_median"])
    assert sum(r["completed"] for r in body["rows"]) > 0
    activities = {e.data["activity_id"] for e in stream if e.type.startswith("coursebridge.learning.")}
    assert body["activity"]["events"] == len(activities)
    last = max(e.data["occurred_at"] for e in stream if e.type.startswith("coursebridge.learning."))
    assert body["activity"]["last_occurred_at"] == last

    one = client.get("/learning/cohorts?from=2025-02-10&to=2025-04-05&product=4712", headers=AUTH).json
    assert one["rows"] and {r["product_id"] for r in one["rows"]} == {"4712"}


def test_refunds_by_progress_counts_the_purchases_approved_in_the_range(client, stream):
    body = client.get("/learning/refunds-by-progress?from=2025-02-10&to=2025-04-05", headers=AUTH).json
    expected: dict[tuple[str, str], list[int]] = {}
    for row in reference.learning_purchases(stream).values():
        if date(2025, 2, 10) <= row["approved_at"].date() <= date(2025, 4, 5):
            target = expected.setdefault((row["product_id"], row["progress"]), [0, 0])
            target[0] += 1
            target[1] += row["reversed_at"] is not None
    got = {(r["product_id"], r["bucket"]): [r["buyers"], r["refunded"]] for r in body["rows"] if r["buyers"]}
    assert got == expected
    assert sum(refunded for _, refunded in expected.values()) > 0
    assert {r["bucket"] for r in body["rows"]} == {"never_started", "started", "completed"}
    for row in body["rows"]:
        assert row["refund_rate"] == (row["refunded"] / row["buyers"] if row["buyers"] else None)


def test_without_talentlms_activity_the_cohorts_say_so(tmp_path, warehouse):
    project_events(warehouse, list(generate_events(200, seed=5)), KEY)
    body = (
        _client(tmp_path, warehouse).get("/learning/cohorts?from=2025-01-01&to=2025-12-31", headers=AUTH).json
    )
    assert body["activity"] == {"events": 0, "last_occurred_at": None}
    assert body["rows"] and all(
        r["started"] == 0 and r["first_access_hours_median"] is None for r in body["rows"]
    )
