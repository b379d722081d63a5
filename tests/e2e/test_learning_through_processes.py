"""Learning analytics end to end through real processes (embedded backend): a purchase enrolls the buyer
in the TalentLMS fake, the buyer signs in and completes the course there, enrollment's learning poller
reads TalentLMS's timeline and publishes, analytics projects, and the Learning API shows the cohort; the
refund that follows lands in the "completed" progress bucket."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests
from stack_harness import Stack, lms_pairs, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

EMAIL = "bruno.lima@example.com"  # the buyer of the one-off samples (product 4712, HP2000000001)
APPROVED_AT = 1741168800  # the sample's approval, 2025-03-05T10:00:00Z
MARCH_2025 = {"from": "2025-03-01", "to": "2025-03-31"}


def sample(name: str) -> bytes:
    return resources.files("ingest.samples").joinpath(f"{name}.json").read_bytes()


def analytics(stack: Stack, path: str, **params: str) -> dict[str, Any]:
    response = requests.get(stack.urls["analytics"] + path, params=params, headers=stack.admin, timeout=10)
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def fake(stack: Stack, path: str, body: dict[str, Any]) -> None:
    response = requests.post(stack.urls["fake"] + path, json=body, timeout=5)
    assert response.status_code in (200, 201), (response.status_code, response.text)


def cohort(stack: Stack) -> dict[str, Any] | None:
    rows = analytics(stack, "/learning/cohorts", **MARCH_2025, product="4712")["rows"]
    return rows[0] if rows else None


def test_timeline_activity_reaches_the_learning_views_and_the_refund_bucket(tmp_path: Path) -> None:
    env = {"ENROLLMENT_LEARNING_INTERVAL_SECONDS": "1", "ANALYTICS_BATCH_WAIT_SECONDS": "0.05"}
    with Stack(tmp_path, analytics=True, extra_env=env) as stack:
        stack.map_products({"4712": ["12"]})
        assert stack.post_webhook(sample("purchase_approved_one_off"))["status"] == "accepted"
        wait_for(lambda: (EMAIL, "12") in lms_pairs(stack.fake_state()), "the buyer to be enrolled")
        wait_for(lambda: (cohort(stack) or {}).get("buyers") == 1, "analytics to count the purchase")
        assert cohort(stack)["started"] == 0

        user_id = next(u["id"] for u in stack.fake_state()["users"] if u["email"] == EMAIL)
        fake(stack, "/_fake/logins", {"user_id": user_id, "at": APPROVED_AT + 2 * 3600})
        fake(stack, "/_fake/completions", {"user_id": user_id, "course_id": "12", "at": APPROVED_AT + 86400})

        wait_for(lambda: (cohort(stack) or {}).get("completed") == 1, "the completion to reach the views", 60)
        row = cohort(stack)
        counts = (row["cohort_month"], row["buyers"], row["started"], row["completed"])
        assert counts == ("2025-03-01", 1, 1, 1)
        assert row["completion_rate"] == pytest.approx(1.0)
        # two hours after the approval (analytics dates it by the webhook, 4 s after `approved_date`)
        assert row["first_access_hours_median"] == pytest.approx(2.0, abs=0.01)

        assert stack.post_webhook(sample("purchase_refunded"))["status"] == "accepted"

        def buckets() -> dict[str, tuple[int, int]]:
            rows = analytics(stack, "/learning/refunds-by-progress", **MARCH_2025, product="4712")["rows"]
            return {r["bucket"]: (r["buyers"], r["refunded"]) for r in rows if r["buyers"]}

        wait_for(lambda: buckets() == {"completed": (1, 1)}, "the refund in the completed bucket", 60)

        # Polled again and again (interval 1 s): the same timeline entries were never counted twice.
        learning = requests.get(stack.urls["enrollment"] + "/admin/learning", headers=stack.admin, timeout=5)
        assert learning.status_code == 200, learning.text
        assert analytics(stack, "/learning/cohorts", **MARCH_2025)["activity"]["events"] == 2
