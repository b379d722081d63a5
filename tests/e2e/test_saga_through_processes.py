"""End to end through real processes (embedded backend): the TalentLMS fake, ingest (API + relay),
enrollment (API + worker). Webhook in -> enrolled in the fake LMS -> refund webhook -> removed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from stack_harness import Stack, lms_pairs, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

EMAIL = "bruno.lima@example.com"  # the buyer of the one-off samples


def sample(name: str) -> bytes:
    return resources.files("ingest.samples").joinpath(f"{name}.json").read_bytes()


def courses_of(stack: Stack, email: str) -> set[str]:
    return {course for who, course in lms_pairs(stack.fake_state()) if who == email}


def test_webhook_to_enrollment_and_refund_to_removal(tmp_path: Path) -> None:
    with Stack(tmp_path) as stack:
        stack.map_products({"4712": ["12"]})

        assert stack.post_webhook(sample("purchase_approved_one_off"))["status"] == "accepted"
        wait_for(lambda: courses_of(stack, EMAIL) == {"12"}, "the student to be enrolled in course 12")
        calls = stack.fake_state()["calls"]
        per_student = {k: v for k, v in calls.items() if k not in ("ratelimit", "courses")}
        assert sum(per_student.values()) <= 2, calls  # new student: signup + enroll

        assert stack.post_webhook(sample("purchase_refunded"))["status"] == "accepted"
        wait_for(lambda: courses_of(stack, EMAIL) == set(), "the student to be removed from course 12")

        courses = stack.student(EMAIL)
        assert [(c["course_id"], c["status"]) for c in courses] == [("12", "revoked")]
        assert courses[0]["reason"].startswith("no access: purchase refunded on ")
