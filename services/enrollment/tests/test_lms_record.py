"""The LMS record and desired state, as pure functions: what to do next, and how outcomes change it."""

from __future__ import annotations

from enrollment.domain.access import AccessSource, Signal
from enrollment.domain.desired import desired, impact
from enrollment.domain.lms_record import Intent, LmsRecord, Step
from enrollment.domain.mapping import ProductMapping
from enrollment.domain.pace import eta_seconds

T0 = "2026-01-01T00:00:00.000Z"
T1 = "2026-01-01T00:01:00.000Z"


def source(access_id: str, product: str, *, active: bool = True, plan: str | None = None) -> AccessSource:
    grant = Signal("grant", access_id, T0, "e1", "approved", product_id=product, plan_id=plan)
    current = AccessSource(access_id).apply(grant)
    if not active:
        current = current.apply(Signal("revoke", access_id, T1, "e2", "purchase refunded"))
    return current


MAPPINGS = {
    "4711": ProductMapping("4711", ("7", "9"), plans={"102": ("7", "9", "11")}),
    "4712": ProductMapping("4712", ("9",)),
}


def test_desired_is_the_union_of_active_sources_for_their_current_plan() -> None:
    got = desired([source("tx:1", "4711", plan="102"), source("tx:2", "4712")], MAPPINGS)

    assert got.courses == {"11": ("tx:1",), "7": ("tx:1",), "9": ("tx:1", "tx:2")}
    assert got.parked == ()


def test_inactive_sources_grant_nothing_and_unmapped_ones_park() -> None:
    got = desired([source("tx:1", "4711", active=False), source("tx:3", "9999")], MAPPINGS)

    assert got.course_ids == frozenset()
    assert got.parked == ("tx:3",)


def test_impact_of_a_mapping_change() -> None:
    after = {**MAPPINGS, "4711": ProductMapping("4711", ("7", "12"))}

    change = impact([source("tx:1", "4711")], MAPPINGS, after)

    assert (change.gains, change.losses) == (frozenset({"12"}), frozenset({"9"}))


def test_a_new_student_is_resolved_before_enrolling() -> None:
    assert LmsRecord().next_steps(frozenset({"7"})) == [Step("resolve_user")]


def test_steps_enroll_what_is_missing_and_remove_only_what_is_ours() -> None:
    record = LmsRecord(user_id="5", enrolled=frozenset({"7", "12"}), managed=frozenset({"7"}))

    assert record.next_steps(frozenset({"9"})) == [Step("enroll", "9"), Step("unenroll", "7")]
    assert record.foreign(frozenset({"9"})) == frozenset({"12"})


def test_anything_in_doubt_is_read_back_first() -> None:
    record = LmsRecord(user_id="5").intending(Intent("enroll", "7", T0))

    assert record.next_steps(frozenset({"7", "9"})) == [Step("read_back")]


def test_a_read_back_settles_intents_by_what_talentlms_has() -> None:
    record = (
        LmsRecord(user_id="5", enrolled=frozenset({"9"}), managed=frozenset({"9"}))
        .intending(Intent("enroll", "7", T0))
        .intending(Intent("unenroll", "9", T0))
    )

    after = record.read_back(frozenset({"7", "12"}), T1)

    assert (after.enrolled, after.managed, after.intents) == (frozenset({"7", "12"}), frozenset({"7"}), ())
    assert after.next_steps(frozenset()) == [Step("unenroll", "7")]


def test_roster_membership_settles_only_the_courses_it_covers() -> None:
    record = LmsRecord(user_id="5").intending(Intent("enroll", "7", T0)).intending(Intent("enroll", "9", T0))

    after = record.settled({"7": True}, T1)

    assert after.managed == frozenset({"7"})
    assert [i.course_id for i in after.intents] == ["9"]


def test_refusals_wait_for_a_resync_and_missing_courses_for_a_mapping_change() -> None:
    record = LmsRecord(user_id="5").refused("7", "Invalid arguments").course_missing("9", "does not exist")

    assert record.next_steps(frozenset({"7", "9"})) == []
    assert record.unblocked().next_steps(frozenset({"7", "9"})) == [Step("enroll", "7"), Step("enroll", "9")]
    assert record.resync().next_steps(frozenset({"7"})) == [Step("read_back")]


def test_a_deleted_user_is_forgotten_with_its_enrollments() -> None:
    record = LmsRecord(user_id="5", enrolled=frozenset({"7"}), managed=frozenset({"7"})).user_missing()

    assert record.next_steps(frozenset({"7"})) == [Step("resolve_user")]


def test_a_user_found_by_email_with_unknown_courses_is_read_back() -> None:
    record = LmsRecord().user_resolved("8", None)

    assert record.next_steps(frozenset({"7"})) == [Step("read_back")]
    assert LmsRecord().user_resolved("8", frozenset()).next_steps(frozenset({"7"})) == [Step("enroll", "7")]


def test_record_json_roundtrip() -> None:
    record = LmsRecord(user_id="5", enrolled=frozenset({"7"}), failures={"9": "no"}).intending(
        Intent("enroll", "11", T0, task_id="t1")
    )

    assert LmsRecord.from_json(record.to_json()) == record


def test_eta_within_and_beyond_the_hourly_quota() -> None:
    common = {"calls_per_student": 2.0, "calls_per_second": 38.0, "quota_limit": 2000, "quota_window": 3600.0}

    assert eta_seconds(19, quota_remaining=2000, quota_reset_in=100, **common) == 1.0
    # 1,500 students need 3,000 calls: 1,000 now, the reset in 600 s, then 2,000 more at 38 calls/s.
    assert round(eta_seconds(1500, quota_remaining=1000, quota_reset_in=600, **common), 1) == round(
        600 + 2000 / 38, 1
    )
    assert eta_seconds(0, quota_remaining=0, quota_reset_in=600, **common) == 0.0
