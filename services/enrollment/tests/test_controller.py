"""The controller end to end on the embedded store and an in-memory LMS (no HTTP): desired state derived
from purchases and mappings, intents and read-backs for in-doubt calls, errors by meaning, batches."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coursebridge.events.access import ACCESS_RESTORED, ACCESS_SUSPENDED, PLAN_CHANGED
from coursebridge.events.enrollments import (
    ENROLLMENT_FAILED,
    ENROLLMENT_GRANTED,
    ENROLLMENT_PARKED,
    ENROLLMENT_REVOKED,
)
from coursebridge.ports import PermanentFailure
from enrollment.adapters.memory_lms import InMemoryLearningPlatform
from enrollment.service_layer.ports import LmsInDoubt, LmsPermanentError, LmsRateLimited, LmsUnavailable
from enrollment.service_layer.students import resync, student_view

sys.path.insert(0, str(Path(__file__).parent))
from controller_support import EMAIL, Harness
from saga_support import delivery, payment_event


@pytest.fixture
def h(tmp_path: Path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def statuses(h: Harness, email: str = EMAIL) -> dict[str, str]:
    return {c["course_id"]: c["status"] for c in student_view(h.store, email)["enrollments"]}


# --- the quiet path ----------------------------------------------------------------------------------------


def test_approval_enrolls_a_new_student_in_every_mapped_course(h: Harness) -> None:
    h.map()
    h.pay()

    h.drain()

    assert h.enrolled() == {"7", "9"}
    assert h.lms.calls["sign_up"] == 1 and h.lms.calls["enroll"] == 2
    assert sorted(e["data"]["course_id"] for e in h.outbox(ENROLLMENT_GRANTED)) == ["7", "9"]
    assert statuses(h) == {"7": "enrolled", "9": "enrolled"}


def test_the_bus_handler_only_decides_and_queues(h: Harness) -> None:
    h.map()
    h.pay()

    assert h.lms.total_calls == 0
    view = student_view(h.store, EMAIL)
    assert view["queue"]["position"] == 1
    assert {c["status"] for c in view["enrollments"]} == {"pending"}


def test_known_student_costs_one_call_per_course(h: Harness) -> None:
    h.map()
    h.pay(transaction="HP1")
    h.drain()
    before = h.work_calls()

    h.map("4712", {"course_ids": ["11"]})
    h.pay(transaction="HP2", product="4712")
    h.drain()

    assert h.work_calls() - before == 1
    assert h.enrolled() == {"7", "9", "11"}


def test_duplicate_delivery_changes_nothing(h: Harness) -> None:
    h.map()
    event = payment_event(transaction="HP1")
    h.payments(event, delivery())
    h.drain()
    calls = h.work_calls()

    h.payments(event, delivery(attempt=2))
    h.drain()

    assert h.work_calls() == calls
    assert len(h.outbox(ENROLLMENT_GRANTED)) == 2


def test_refund_compensates_with_the_reason(h: Harness) -> None:
    h.map()
    h.pay(transaction="HP1")
    h.drain()

    h.pay("PURCHASE_REFUNDED", transaction="HP1", second=60)
    h.drain()

    assert h.enrolled() == set()
    revoked = h.outbox(ENROLLMENT_REVOKED)
    assert {e["data"]["course_id"] for e in revoked} == {"7", "9"}
    assert {e["data"]["reason"] for e in revoked} == {"purchase refunded"}
    assert statuses(h) == {"7": "revoked", "9": "revoked"}


def test_refund_before_its_approval_blocks_the_late_approval(h: Harness) -> None:
    h.map()
    h.pay("PURCHASE_REFUNDED", transaction="HP1", second=60)
    h.pay(transaction="HP1", second=0)

    h.drain()

    assert h.enrolled() == set()
    assert h.lms.calls["enroll"] == 0


def test_compensation_keeps_courses_another_active_purchase_covers(h: Harness) -> None:
    h.map()
    h.map("4712", {"course_ids": ["9"]})
    h.pay(transaction="HP1")
    h.pay(transaction="HP2", product="4712")
    h.drain()

    h.pay("PURCHASE_CHARGEBACK", transaction="HP1", second=60)
    h.drain()

    assert h.enrolled() == {"9"}


def test_approval_without_a_buyer_email_is_dead_lettered(h: Harness) -> None:
    event = payment_event()
    event.data["buyer"]["email"] = None
    with pytest.raises(PermanentFailure):
        h.payments(event, delivery())


# --- desired state is computed -----------------------------------------------------------------------------


def test_unmapped_approval_is_parked_then_granted_once_mapped(h: Harness) -> None:
    h.pay()
    h.drain()
    assert h.enrolled() == set()
    view = student_view(h.store, EMAIL)
    assert view["parked"][0]["product_id"] == "4711"
    assert "not mapped" in view["parked"][0]["reason"]
    assert len(h.outbox(ENROLLMENT_PARKED)) == 1

    h.map()
    h.drain()

    assert h.enrolled() == {"7", "9"}
    assert student_view(h.store, EMAIL)["parked"] == []
    assert h.store.query("parked") == []


def test_a_mapping_change_adds_and_removes_courses_for_every_student(h: Harness) -> None:
    h.map()
    for n in range(3):
        h.pay(transaction=f"HP{n}", email=f"buyer{n}@example.com")
    h.drain()

    h.map(body={"course_ids": ["7", "11"]})
    h.drain()

    for n in range(3):
        assert h.enrolled(f"buyer{n}@example.com") == {"7", "11"}


def test_deleting_a_mapping_removes_its_courses(h: Harness) -> None:
    h.map()
    h.pay()
    h.drain()

    h.unmap()
    h.drain()

    assert h.enrolled() == set()
    assert student_view(h.store, EMAIL)["parked"][0]["product_id"] == "4711"


def test_a_plan_switch_while_suspended_takes_effect_on_restore(h: Harness) -> None:
    h.map(body={"course_ids": ["7"], "plans": {"102": ["7", "9", "11"]}})
    h.pay(subscriber="SUB-1", plan="101", transaction="HP1")
    h.drain()
    assert h.enrolled() == {"7"}

    h.access(ACCESS_SUSPENDED, second=10)
    h.drain()
    h.access(PLAN_CHANGED, plan="102", previous_plan="101", state="suspended", second=20)
    h.drain()
    assert h.enrolled() == set()

    h.access(ACCESS_RESTORED, plan="102", state="active", second=30)
    h.drain()
    assert h.enrolled() == {"7", "9", "11"}


def test_a_plan_switch_down_removes_the_premium_courses(h: Harness) -> None:
    h.map(body={"course_ids": ["7"], "plans": {"102": ["7", "9", "11"]}})
    h.pay(subscriber="SUB-1", plan="102", transaction="HP1")
    h.drain()

    h.access(PLAN_CHANGED, plan="101", previous_plan="102", state="active", second=20)
    h.drain()

    assert h.enrolled() == {"7"}


# --- in doubt ----------------------------------------------------------------------------------------------


def test_an_enrollment_that_timed_out_after_acting_is_removed_by_a_later_refund(h: Harness) -> None:
    h.map(body={"course_ids": ["7"]})
    h.pay(transaction="HP1")
    h.lms.in_doubt_after("enroll")
    h.dispatcher.run_round()
    assert h.enrolled() == {"7"} and h.record().in_doubt  # TalentLMS acted; nobody knows yet

    h.pay("PURCHASE_REFUNDED", transaction="HP1", second=60)
    h.drain()

    assert h.enrolled() == set()
    assert h.lms.calls["user_courses"] == 1  # read back, not assumed


def test_a_removal_that_timed_out_after_acting_is_undone_by_a_restore(h: Harness) -> None:
    h.map(body={"course_ids": ["7"]})
    h.pay(subscriber="SUB-1", transaction="HP1")
    h.drain()
    h.access(ACCESS_SUSPENDED, second=10)
    h.lms.in_doubt_after("unenroll")
    h.dispatcher.run_round()
    assert h.enrolled() == set() and h.record().in_doubt

    h.access(ACCESS_RESTORED, state="active", second=20)
    h.drain()

    assert h.enrolled() == {"7"}


def test_a_crash_between_intent_and_call_is_settled_by_reading_back(h: Harness) -> None:
    h.map(body={"course_ids": ["7"]})
    h.pay()

    class Crash(Exception):
        pass

    h.lms.fail_next("enroll", Crash, when="after")
    with pytest.raises(Crash):
        h.dispatcher.run_round()
    assert h.record().intents  # the intent survived the crash
    h.restart()

    h.drain()

    assert h.enrolled() == {"7"}
    assert h.record().managed == frozenset({"7"})
    assert not h.record().in_doubt


def test_an_in_doubt_sign_up_finds_the_user_it_created(h: Harness) -> None:
    h.map(body={"course_ids": ["7"]})
    h.pay()
    h.lms.in_doubt_after("sign_up")

    h.drain()

    assert h.enrolled() == {"7"}
    assert len(h.lms.users) == 1


# --- errors by meaning -------------------------------------------------------------------------------------


def test_a_rejected_key_pauses_without_failing_anything_and_resumes_by_itself(h: Harness) -> None:
    h.map()
    h.pay()
    h.lms.reject_key()

    for _ in range(3):
        h.dispatcher.run_round()
        h.clock.now += 10
    assert h.dispatcher.paused is not None
    assert h.record().failures == {}
    assert h.outbox(ENROLLMENT_FAILED) == []

    h.lms.reject_key(False)
    h.drain()

    assert h.dispatcher.paused is None
    assert h.enrolled() == {"7", "9"}


def test_a_rate_limit_waits_and_never_fails(h: Harness) -> None:
    h.map()
    h.pay()
    h.lms.fail_next("enroll", lambda: LmsRateLimited("429", 20.0), times=3)

    h.drain()

    assert h.enrolled() == {"7", "9"}
    assert h.outbox(ENROLLMENT_FAILED) == []


def test_an_unreachable_lms_is_retried(h: Harness) -> None:
    h.map()
    h.pay()
    h.lms.fail_next("enroll", lambda: LmsUnavailable("refused"), times=2)

    h.drain()

    assert h.enrolled() == {"7", "9"}


def test_a_course_that_does_not_exist_waits_for_a_mapping_change(h: Harness) -> None:
    h.map(body={"course_ids": ["7", "404"]})
    h.pay()
    h.drain()
    assert h.enrolled() == {"7"}
    assert statuses(h)["404"] == "blocked"
    assert h.outbox(ENROLLMENT_FAILED)[0]["data"]["course_id"] == "404"

    h.map(body={"course_ids": ["7", "9"]})
    h.drain()

    assert h.enrolled() == {"7", "9"}


def test_a_user_deleted_in_talentlms_is_resolved_again(h: Harness) -> None:
    h.map()
    h.map("4712", {"course_ids": ["11"]})
    h.pay(transaction="HP1")
    h.drain()
    h.lms.delete_user(h.record().user_id or "")

    h.pay(transaction="HP2", product="4712")
    h.drain()

    assert h.enrolled() == {"7", "9", "11"}
    assert h.record().failures == {}


def test_a_refusal_is_recorded_and_a_resync_retries_it(h: Harness) -> None:
    h.map(body={"course_ids": ["7"]})
    h.pay()
    h.lms.fail_next("enroll", lambda: LmsPermanentError("Invalid arguments provided"))
    h.drain()
    assert statuses(h)["7"] == "failed"
    assert h.enrolled() == set()

    assert resync(h.store, EMAIL) is True
    h.drain()

    assert h.enrolled() == {"7"}
    assert statuses(h)["7"] == "enrolled"


# --- ordering and batches ----------------------------------------------------------------------------------


def test_revocations_are_served_before_a_grant_backlog(h: Harness) -> None:
    h.map(body={"course_ids": ["7"]})
    h.pay(transaction="HP0", email="early@example.com")
    h.drain()
    for n in range(150):
        h.pay(transaction=f"HP{n + 1}", email=f"buyer{n}@example.com")
    h.pay("PURCHASE_REFUNDED", transaction="HP0", email="early@example.com", second=60)

    h.dispatcher.run_round()

    assert h.enrolled("early@example.com") == set()


def test_a_launch_backlog_is_served_in_batches(tmp_path: Path) -> None:
    h = Harness(tmp_path, batch_threshold=50)
    try:
        h.map()
        buyers = [f"buyer{n}@example.com" for n in range(300)]
        for n, email in enumerate(buyers):
            h.pay(transaction=f"HP{n}", email=email)

        h.drain()

        assert all(h.enrolled(email) == {"7", "9"} for email in buyers)
        calls = h.work_calls()
        assert calls < 0.2 * 2 * len(buyers)  # far below two calls per student
        assert h.lms.calls["batch_enroll"] == 6 and h.lms.calls["batch_upsert_users"] == 3
        assert len(h.outbox(ENROLLMENT_GRANTED)) == 600
    finally:
        h.close()


def test_a_batch_whose_task_partly_fails_is_checked_and_finished(tmp_path: Path) -> None:
    lms = InMemoryLearningPlatform(task_polls=99)  # the task never reports done while polled
    h = Harness(tmp_path, batch_threshold=10, lms=lms)
    try:
        h.map()
        for n in range(40):
            h.pay(transaction=f"HP{n}", email=f"buyer{n}@example.com")
        h.dispatcher.run_round()
        lms.run_pending_tasks()  # TalentLMS finished the tasks after we stopped polling

        h.drain()

        assert all(h.enrolled(f"buyer{n}@example.com") == {"7", "9"} for n in range(40))
        assert all(not h.record(f"buyer{n}@example.com").in_doubt for n in range(40))
    finally:
        h.close()


def test_a_crash_mid_batch_is_settled_from_the_course_rosters(tmp_path: Path) -> None:
    h = Harness(tmp_path, batch_threshold=10)
    try:
        h.map()
        for n in range(60):
            h.pay(transaction=f"HP{n}", email=f"buyer{n}@example.com")

        class Crash(Exception):
            pass

        h.lms.fail_next("batch_enroll", Crash, when="after")
        with pytest.raises(Crash):
            h.dispatcher.run_round()
        h.lms.run_pending_tasks()
        h.restart()

        h.drain()

        assert all(h.enrolled(f"buyer{n}@example.com") == {"7", "9"} for n in range(60))
        assert h.lms.calls["user_courses"] == 0  # settled by rosters, not one read per student
    finally:
        h.close()


def test_a_batch_call_in_doubt_converges(tmp_path: Path) -> None:
    h = Harness(tmp_path, batch_threshold=10)
    try:
        h.map()
        for n in range(30):
            h.pay(transaction=f"HP{n}", email=f"buyer{n}@example.com")
        h.lms.fail_next("batch_enroll", lambda: LmsInDoubt("timeout"), when="after")

        h.drain()

        assert all(h.enrolled(f"buyer{n}@example.com") == {"7", "9"} for n in range(30))
    finally:
        h.close()
