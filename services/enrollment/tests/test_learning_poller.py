"""The learning poller: TalentLMS's timeline → ``learning`` events, once each, within the quota share.

Real use cases on the embedded store with the in-memory TalentLMS (``controller_support``); the last test
runs the poller against the served fake TalentLMS.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import requests

from coursebridge.events.contracts import load_schema
from coursebridge.topology import LEARNING
from enrollment.adapters.memory_lms import InMemoryLearningPlatform
from enrollment.service_layer.learning import STATE_DOC, LearningPoller, watermark_doc
from enrollment.service_layer.ports import Quota
from enrollment.service_layer.repository import LMS_STATE, QUEUE

sys.path.insert(0, str(Path(__file__).parent))
from controller_support import EMAIL, Harness
from saga_support import BASE_TIME

BIA = "bia.lima@example.com"
SIGNED_IN = "coursebridge.learning.signed_in.v1"
COMPLETED = "coursebridge.learning.course_completed.v1"
CONTRACT = jsonschema_rs.Draft202012Validator(load_schema("learning_activity.v1"))


def at(seconds: int) -> int:
    """Epoch seconds, ``seconds`` after the purchases' base time."""
    return int((BASE_TIME + timedelta(seconds=seconds)).timestamp())


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path, learning_interval=900)
    h.map("4711", {"course_ids": ["7", "9"]})
    h.map("4712", {"course_ids": ["12"]})
    h.pay(transaction="HP1", product="4711", second=0)
    h.pay(transaction="HP2", product="4712", second=50)
    h.pay(transaction="HP3", product="4711", email=BIA, second=0)
    h.drain()
    yield h
    h.close()


def poller(h: Harness) -> LearningPoller:
    assert h.dispatcher.learning is not None
    return h.dispatcher.learning


def user_id(h: Harness, email: str = EMAIL) -> str:
    user = h.record(email).user_id
    assert user is not None
    return user


def learning_events(h: Harness) -> list[dict[str, Any]]:
    entries = [doc.data for doc in h.store.query("outbox", order_by="sequence")]
    return [e["event"] for e in entries if e["topic"] == LEARNING]


def activities(h: Harness) -> list[tuple[str, str, str | None, list[str]]]:
    return [
        (
            e["data"]["activity"],
            e["data"]["lms_user_id"],
            e["data"]["course_id"],
            [p["transaction"] for p in e["data"]["purchases"]],
        )
        for e in learning_events(h)
    ]


def test_each_entry_is_published_once_across_runs_and_restarts(harness: Harness) -> None:
    h, ana = harness, user_id(harness)
    h.lms.sign_in(ana, at(100))
    h.lms.complete(ana, "7", at(200))

    first = poller(h).step()
    again = poller(h).step()
    h.lms.sign_in(ana, at(300))
    h.restart()  # a new process: only the store remembers
    after_restart = poller(h).step()
    nothing_new = poller(h).step()

    assert first.published == {"signed_in": 1, "course_completed": 1}
    assert again.published == {"signed_in": 0, "course_completed": 0}
    assert after_restart.published == {"signed_in": 1, "course_completed": 0}
    assert nothing_new.published == {"signed_in": 0, "course_completed": 0}
    ids = [e["data"]["activity_id"] for e in learning_events(h)]
    assert ids == [
        f"la-user_login_user-{ana}-0-{at(100)}",
        f"la-course_completion-{ana}-7-{at(200)}",
        f"la-user_login_user-{ana}-0-{at(300)}",
    ]
    assert h.lms.calls["timeline"] == 8  # one read per type and poll, no more


def test_entries_at_the_watermark_second_are_neither_lost_nor_repeated(harness: Harness) -> None:
    h = harness
    ana, bia = user_id(h), user_id(h, BIA)
    h.lms.sign_in(ana, at(100))
    poller(h).step()
    h.lms.sign_in(bia, at(100))  # the same second, read only by the next poll

    second = poller(h).step()

    assert second.published["signed_in"] == 1
    assert sorted(e["data"]["lms_user_id"] for e in learning_events(h)) == sorted([ana, bia])


def test_events_keep_the_contract_and_no_personal_data(harness: Harness) -> None:
    h, ana = harness, user_id(harness)
    h.lms.sign_in(ana, at(100))
    h.lms.complete(ana, "12", at(200))

    poller(h).step()

    events = learning_events(h)
    assert [e["type"] for e in events] == [SIGNED_IN, COMPLETED]
    for event in events:
        CONTRACT.validate(event["data"])
        assert EMAIL not in str(event)
    assert events[0]["data"]["course_id"] is None and events[0]["data"]["occurred_at"].endswith(".000Z")
    entries = [doc.data for doc in h.store.query("outbox") if doc.data["topic"] == LEARNING]
    assert {e["ordering_key"] for e in entries} == {ana}


def test_attribution_follows_activation_time_and_the_courses_a_product_grants(harness: Harness) -> None:
    h = harness
    ana, bia = user_id(h), user_id(h, BIA)
    h.lms.sign_in(ana, at(10))  # before HP2 (second 50) was bought
    h.lms.sign_in(ana, at(60))
    h.lms.complete(ana, "12", at(70))  # granted by 4712 only
    h.lms.complete(ana, "7", at(80))  # granted by 4711 only
    h.lms.complete(bia, "9", at(90))

    poller(h).step()

    assert activities(h) == [
        ("signed_in", ana, None, ["HP1"]),
        ("signed_in", ana, None, ["HP1", "HP2"]),
        ("course_completed", ana, "12", ["HP2"]),
        ("course_completed", ana, "7", ["HP1"]),
        ("course_completed", bia, "9", ["HP3"]),
    ]


def test_users_coursebridge_does_not_know_are_skipped_and_counted(harness: Harness) -> None:
    h, ana = harness, user_id(harness)
    h.lms.sign_in("9999", at(100))
    h.lms.sign_in(ana, at(101))

    run = poller(h).step()
    again = poller(h).step()

    assert run.unknown_users == 1 and again.unknown_users == 0  # the watermark moved past it
    assert [a[1] for a in activities(h)] == [ana]


def test_a_full_answer_past_the_watermark_is_a_gap_completions_are_reread_per_course(
    harness: Harness,
) -> None:
    h, ana = harness, user_id(harness)
    h.lms.complete(ana, "12", at(1))
    poller(h).step()  # a watermark exists from here on
    for second in range(150):
        h.lms.complete(ana, "7", at(100 + second))
    for second in range(100):
        h.lms.complete(ana, "9", at(300 + second))  # the last 200 hold 50 of course 7 and all of 9

    run = poller(h).step()

    assert run.gaps == ["course_completion"]
    assert run.courses_reread == ["7", "9", "12"]  # every mapped course, each with its own last 200
    assert run.published["course_completed"] == 250  # nothing lost
    assert run.calls == {"user_login_user": 1, "course_completion": 4}
    assert len({e["data"]["activity_id"] for e in learning_events(h)}) == 251


def test_a_sign_in_gap_brings_the_next_poll_sooner_until_answers_are_not_full(harness: Harness) -> None:
    h, ana = harness, user_id(harness)
    h.lms.sign_in(ana, at(1))
    poller(h).step()
    for second in range(250):
        h.lms.sign_in(ana, at(100 + second))

    run = poller(h).step()
    sooner = h.store.get(LMS_STATE, STATE_DOC)["interval_seconds"]
    h.lms.sign_in(ana, at(400))
    poller(h).step()
    back = h.store.get(LMS_STATE, STATE_DOC)["interval_seconds"]

    assert run.gaps == ["user_login_user"] and run.published["signed_in"] == 200  # 50 out of reach
    assert sooner == 450 and back == 900


def test_the_quota_share_is_never_exceeded_and_survives_a_restart(harness: Harness) -> None:
    h, ana = harness, user_id(harness)
    hour = Quota(limit=60, remaining=60, reset_at=h.clock() + 3600)  # 5%: 3 learning calls this hour
    h.lms.sign_in(ana, at(1))
    h.lms.calls.clear()

    first = poller(h).step(hour)
    second = poller(h).step(hour)
    h.restart()
    third = poller(h).step(hour)
    h.clock.now += 3601
    next_hour = Quota(limit=60, remaining=60, reset_at=h.clock() + 3600)
    fourth = poller(h).step(next_hour)

    assert sum(first.calls.values()) == 2 and not first.share_spent
    assert sum(second.calls.values()) == 1 and second.share_spent
    assert sum(third.calls.values()) == 0 and third.share_spent  # the stored count, not a fresh one
    assert sum(fourth.calls.values()) == 2 and not fourth.share_spent
    assert h.lms.calls["timeline"] == 5


def test_the_dispatcher_serves_the_queue_first_and_keeps_learning_within_its_share(tmp_path: Path) -> None:
    lms = InMemoryLearningPlatform(hourly_quota=60)  # 5%: 3 learning calls per hour
    h = Harness(tmp_path, lms=lms, learning_interval=60)
    h.dispatcher.settings.students_per_round = 2  # a queue that takes several rounds
    try:
        h.map("4711", {"course_ids": ["7", "9"]})
        h.clock.now += 120  # the learning poll is due from the start
        poller(h).due()
        h.clock.now += 120
        for n in range(6):
            h.pay(transaction=f"HP{n}", email=f"buyer{n}@example.com")
        rounds_with_work_left = []
        for _ in range(40):
            before = lms.calls["timeline"]
            h.dispatcher.run_round()
            if h.store.count(QUEUE) > 0:
                rounds_with_work_left.append(lms.calls["timeline"] - before)
            h.clock.now += 61
        served = {e for n in range(6) for e in h.enrolled(f"buyer{n}@example.com")}
    finally:
        h.close()

    assert served == {"7", "9"}
    assert rounds_with_work_left and set(rounds_with_work_left) == {0}  # nothing while students wait
    assert lms.calls["timeline"] == 3  # 40 rounds of 61 s: every poll due, only the share spent


def test_a_new_deployment_polls_one_interval_after_it_starts(harness: Harness) -> None:
    h = harness
    assert not poller(h).due()
    h.clock.now += 901
    assert poller(h).due()
    h.restart()
    assert poller(h).due()  # the first poll's time was stored, a restart does not push it back


def test_the_watermark_is_stored_per_type(harness: Harness) -> None:
    h, ana = harness, user_id(harness)
    h.lms.sign_in(ana, at(100))
    poller(h).step()

    assert h.store.get(LMS_STATE, watermark_doc("user_login_user"))["at"] == at(100)
    assert h.store.get(LMS_STATE, watermark_doc("course_completion")) is None


def test_the_poller_reads_the_served_fake_talentlms(tmp_path: Path, fake_lms: Any) -> None:
    platform = fake_lms.platform()
    h = Harness(tmp_path, lms=platform, learning_interval=900)  # type: ignore[arg-type]
    try:
        h.map("4711", {"course_ids": ["7", "9"]})
        h.pay(transaction="HP1", product="4711")
        h.drain()
        ana = user_id(h)
        for path, body in (
            ("logins", {"user_id": ana, "at": at(100)}),
            ("completions", {"user_id": ana, "course_id": "9", "at": at(200)}),
        ):
            assert requests.post(f"{fake_lms.url}/_fake/{path}", json=body, timeout=5).status_code == 200
        calls_before = fake_lms.snapshot()["calls_total"]

        run = poller(h).step(platform.quota())
        again = poller(h).step(platform.quota())
        published = activities(h)
    finally:
        h.close()

    assert run.published == {"signed_in": 1, "course_completed": 1}
    assert again.published == {"signed_in": 0, "course_completed": 0}
    assert published == [("signed_in", ana, None, ["HP1"]), ("course_completed", ana, "9", ["HP1"])]
    snapshot = fake_lms.snapshot()
    assert (
        snapshot["calls"]["gettimeline"] == 4 and snapshot["calls_total"] - calls_before == 6
    )  # + ratelimit


def test_re_reads_after_a_gap_stay_within_the_share(harness: Harness) -> None:
    h, ana = harness, user_id(harness)
    h.lms.complete(ana, "12", at(1))
    poller(h).step()
    h.clock.now += 3601  # a fresh quota hour for the share below
    for second in range(250):
        h.lms.complete(ana, "9" if second < 100 else "7", at(100 + second))  # course 9's are the oldest
    hour = Quota(limit=60, remaining=60, reset_at=h.clock() + 3600)  # 3 learning calls this hour

    run = poller(h).step(hour)

    assert run.calls == {"user_login_user": 1, "course_completion": 2} and run.share_spent
    assert run.courses_reread == ["7"] and run.gaps == ["course_completion"]
    # The share ends before course 9 is re-read: its 50 oldest completions stay out of reach (documented).
    assert run.published["course_completed"] == 200
    assert poller(h).due() is False  # the next poll waits for the share to refill


def test_a_crash_between_chunks_publishes_nothing_twice(harness: Harness, monkeypatch) -> None:
    h, ana = harness, user_id(harness)
    for second in range(150):
        h.lms.sign_in(ana, at(100 + second))  # two chunks of one transaction each
    real = h.store.transaction
    done = []

    def crash_on_second_chunk(work):
        if done:
            raise RuntimeError("killed")
        done.append(True)
        return real(work)

    monkeypatch.setattr(h.store, "transaction", crash_on_second_chunk)
    with pytest.raises(RuntimeError):
        poller(h).step()
    monkeypatch.setattr(h.store, "transaction", real)
    h.restart()
    poller(h).step()

    ids = [e["data"]["activity_id"] for e in learning_events(h)]
    assert len(ids) == 150 and len(set(ids)) == 150


def test_a_five_second_window_reported_as_the_quota_does_not_size_the_share(harness: Harness) -> None:
    h = harness
    short = Quota(limit=200, remaining=150, reset_at=h.clock() + 4)  # a portal without an hourly quota
    hour = Quota(limit=10_000, remaining=9_000, reset_at=h.clock() + 1800)

    assert poller(h).allowed_per_hour(short) == 100  # 5 % of the configured 2,000
    assert poller(h).allowed_per_hour(hour) == 500
    assert poller(h).allowed_per_hour(None) == 100
