"""TalentLMS's timeline (``gettimeline``): the fake's wire behaviour and the v1 client reading it.

The fake keeps every event but, like TalentLMS, answers only the LAST 200 of a type: the poller's trap.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from enrollment.adapters.budget import CallBudget
from enrollment.adapters.rate_limit import RateLimiter
from enrollment.service_layer.ports import TimelineEntry

FIELDS = {
    "action",
    "message",
    "timestamp",
    "unix_timestamp",
    "user_id",
    "user_username",
    "user_email",
    "user_fullname",
    "object_id",
    "object_name",
    "secondary_object_id",
    "secondary_object_name",
    "event_counter",
}


def timeline(fake: Any, args: str) -> requests.Response:
    return requests.get(f"{fake.base_url}/gettimeline/{args}", auth=(fake.api_key, ""), timeout=5)


def control(fake: Any, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{fake.url}/_fake/{path}", json=body, timeout=5)


def test_enrol_and_unenrol_are_on_the_timeline_with_the_documented_fields(fake_lms: Any) -> None:
    user = fake_lms.add_user("ana@example.com")
    fake_lms.state.enroll(user, "7", "learner")
    fake_lms.state.unenroll(user, "7")

    added = timeline(fake_lms, "event_type:course_add_user")
    removed = timeline(fake_lms, "event_type:course_remove_user")

    assert added.status_code == 200 and removed.status_code == 200
    (event,) = added.json()
    assert set(event) == FIELDS
    assert (event["action"], event["user_id"], event["object_id"]) == ("course_add_user", user, "7")
    assert event["object_name"] == "Academy: Foundations"
    assert event["unix_timestamp"].isdigit() and abs(int(event["unix_timestamp"]) - time.time()) < 5
    assert [e["object_id"] for e in removed.json()] == ["7"]


def test_v2_enrolments_and_batches_are_recorded_too(fake_lms: Any) -> None:
    ana, bia = fake_lms.add_user("ana@example.com"), fake_lms.add_user("bia@example.com")
    fake_lms.state.configure_tasks(delay_seconds=0)
    v2 = fake_lms.v2_client()
    v2.enroll(ana, "9")
    v2.task_status(v2.batch_enroll([(bia, "12")]))

    added = timeline(fake_lms, "event_type:course_add_user").json()

    assert sorted((e["user_id"], e["object_id"]) for e in added) == [(ana, "9"), (bia, "12")]


def test_sign_ins_and_completions_come_from_the_test_controls(fake_lms: Any) -> None:
    user = fake_lms.add_user("ana@example.com")
    fake_lms.state.enroll(user, "7", "learner")

    signed = control(fake_lms, "logins", {"user_id": user, "at": 1_800_000_000})
    done = control(fake_lms, "completions", {"user_id": user, "course_id": "7"})
    not_enrolled = control(fake_lms, "completions", {"user_id": user, "course_id": "9"})
    unknown = control(fake_lms, "logins", {"user_id": "999"})
    malformed = control(fake_lms, "completions", {"user_id": user})

    assert signed.status_code == 200 and signed.json()["unix_timestamp"] == "1800000000"
    assert done.status_code == 200 and done.json()["object_id"] == "7"
    assert not_enrolled.status_code == 400 and unknown.status_code == 404 and malformed.status_code == 400
    logins = timeline(fake_lms, f"event_type:user_login_user,user_id:{user}").json()
    assert [e["timestamp"] for e in logins] == ["15/01/2027, 08:00:00"]
    assert [e["object_id"] for e in timeline(fake_lms, "event_type:course_completion").json()] == ["7"]


def test_only_the_last_200_of_a_type_are_answered_and_filters_apply_first(fake_lms: Any) -> None:
    ana, bia = fake_lms.add_user("ana@example.com"), fake_lms.add_user("bia@example.com")
    for second in range(250):
        fake_lms.state.record_event("user_login_user", ana, at=1_800_000_000 + second)
    fake_lms.state.record_event("user_login_user", bia, at=1_700_000_000)  # older than all of Ana's

    everyone = timeline(fake_lms, "event_type:user_login_user").json()
    only_bia = timeline(fake_lms, f"event_type:user_login_user,user_id:{bia}").json()
    in_a_group = timeline(fake_lms, "event_type:user_login_user,group_id:3").json()

    assert len(everyone) == 200
    stamps = sorted(int(e["unix_timestamp"]) for e in everyone)
    assert stamps == list(range(1_800_000_050, 1_800_000_250))  # the 50 oldest (and Bia's) are out of reach
    assert [e["user_id"] for e in only_bia] == [bia]
    assert in_a_group == []  # the fake has no groups


@pytest.mark.parametrize(
    "args",
    [
        "",
        "event_type:no_such_type",
        "event_type:user_login_user,user_id:abc",
        "event_type:user_login_user,x:1",
    ],
)
def test_bad_timeline_arguments_are_invalid(fake_lms: Any, args: str) -> None:
    response = timeline(fake_lms, args)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Invalid arguments provided"


def test_learner_simulation_is_deterministic_and_needs_time(fake_lms: Any) -> None:
    state = fake_lms.state
    now = [1_800_000_000.0]
    state.clock = lambda: now[0]
    users = [fake_lms.add_user(f"u{i}@example.com") for i in range(40)]
    for user in users:
        state.enroll(user, "7", "learner")

    assert state.simulate_learners() == 0  # nobody acts within 5 s of the enrolment
    now[0] += 400
    first = state.simulate_learners()
    again = state.simulate_learners()

    events = state.timeline
    logins = {e["user_id"] for e in events if e["action"] == "user_login_user"}
    completions = {e["user_id"] for e in events if e["action"] == "course_completion"}
    assert first > 0 and again == 0  # each planned action happens once
    assert 0 < len(completions) < len(logins) < len(users)
    assert all(int(e["unix_timestamp"]) <= now[0] for e in events)


def test_the_client_reads_the_timeline_sorted_without_personal_data(fake_lms: Any) -> None:
    ana = fake_lms.add_user("ana@example.com")
    fake_lms.state.enroll(ana, "7", "learner")
    fake_lms.state.enroll(ana, "9", "learner")
    for at, course in ((1_800_000_300, "9"), (1_800_000_100, "7")):
        fake_lms.state.record_event("course_completion", ana, course, at=at)
    budget = CallBudget(RateLimiter(1000, 1.0, max_wait=2.0), hourly_quota=100)
    client = fake_lms.client(budget=budget, timeout=5.0)

    completions = client.timeline("course_completion")
    of_course_9 = client.timeline("course_completion", course_id="9")
    logins = client.timeline("user_login_user", user_id=ana)

    assert completions == [
        TimelineEntry("course_completion", ana, 1_800_000_100, "7"),
        TimelineEntry("course_completion", ana, 1_800_000_300, "9"),
    ]
    assert [e.course_id for e in of_course_9] == ["9"] and logins == []
    assert budget.remaining == 97  # every read is counted against the one budget
    assert "ana@example.com" not in repr(completions)
    assert fake_lms.snapshot()["calls"]["gettimeline"] == 3
