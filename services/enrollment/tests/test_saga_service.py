"""The saga's use case against the embedded store and an in-memory LMS (no HTTP): effects, idempotency,
compensation, parking, LMS errors, call counts, and a Hypothesis property over event orders."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coursebridge.adapters.sqlite_store import SqliteStore
from coursebridge.events.access import ACCESS_EXPIRED, ACCESS_RESTORED, ACCESS_SUSPENDED, PLAN_CHANGED
from coursebridge.events.enrollments import (
    ENROLLMENT_FAILED,
    ENROLLMENT_GRANTED,
    ENROLLMENT_PARKED,
    ENROLLMENT_REVOKED,
)
from coursebridge.events.payments import payment_event_type
from coursebridge.ports import PermanentFailure
from enrollment.adapters.memory_lms import InMemoryLearningPlatform
from enrollment.domain.mapping import parse_mapping
from enrollment.service_layer.catalogue import Catalogue
from enrollment.service_layer.handlers import (
    payments_dispatcher,
    reconcile_stale,
    redrive_parked,
    subscriptions_dispatcher,
)
from enrollment.service_layer.ports import LmsPermanentError, LmsTransientError
from enrollment.service_layer.saga import ENTITLEMENTS, PARKED, Saga
from enrollment.service_layer.students import student_enrollments

sys.path.insert(0, str(Path(__file__).parent))
from saga_support import access_event, delivery, payment_event

EMAIL = "ana.souza@example.com"


class Harness:
    def __init__(self, path: Path) -> None:
        self.store = SqliteStore("enrollment", path / "enrollment.sqlite3")
        self.lms = InMemoryLearningPlatform()
        self.saga = Saga(self.store, self.lms)
        self.catalogue = Catalogue(self.store)
        self.payments = payments_dispatcher(self.saga)
        self.subscriptions = subscriptions_dispatcher(self.saga)

    def map(self, product: str = "4711", body: dict | None = None) -> None:
        self.catalogue.put(parse_mapping(product, body or {"course_ids": ["7", "9"]}))

    def pay(self, event: str = "PURCHASE_APPROVED", **options) -> None:
        self.payments(payment_event(event, **options), delivery())

    def access(self, event_type: str, **options) -> None:
        self.subscriptions(access_event(event_type, **options), delivery("enrollment.subscriptions"))

    def outbox(self, event_type: str | None = None) -> list[dict]:
        entries = [doc.data["event"] for doc in self.store.query("outbox", order_by="sequence")]
        return [e for e in entries if event_type is None or e["type"] == event_type]

    def enrolled(self, email: str = EMAIL) -> set[str]:
        return self.lms.enrolled(email)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def h(tmp_path: Path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def test_approval_enrolls_a_new_student_in_every_mapped_course(h: Harness) -> None:
    h.map()
    h.pay()
    assert h.enrolled() == {"7", "9"}
    assert h.lms.calls == {"sign_up": 1, "enroll": 2}  # new student: signup once, then one call per course
    granted = h.outbox(ENROLLMENT_GRANTED)
    assert {g["data"]["course_id"] for g in granted} == {"7", "9"}
    assert all(g["data"]["access_id"] == "tx:HP1" and g["data"]["lms_user_id"] for g in granted)
    view = student_enrollments(h.store, "Ana.Souza@Example.com")
    assert [(c["course_id"], c["status"], c["granted_by"]) for c in view] == [
        ("7", "enrolled", "tx:HP1"),
        ("9", "enrolled", "tx:HP1"),
    ]


def test_known_student_costs_one_call_per_course(h: Harness) -> None:
    h.map()
    h.map("4712", {"course_ids": ["11"]})
    h.pay()
    h.lms.calls.clear()
    h.pay(transaction="HP2", product="4712")
    assert h.lms.calls == {"enroll": 1}
    assert h.enrolled() == {"7", "9", "11"}


def test_duplicate_delivery_changes_nothing(h: Harness) -> None:
    h.map()
    event = payment_event(transaction="HP1")
    h.payments(event, delivery())
    calls, outbox = dict(h.lms.calls), len(h.outbox())
    h.payments(event, delivery(attempt=2))
    assert dict(h.lms.calls) == calls
    assert len(h.outbox()) == outbox


def test_refund_compensates_with_the_reason(h: Harness) -> None:
    h.map()
    h.pay(second=0)
    h.pay("PURCHASE_REFUNDED", second=60)
    assert h.enrolled() == set()
    revoked = h.outbox(ENROLLMENT_REVOKED)
    assert {r["data"]["course_id"] for r in revoked} == {"7", "9"}
    assert {r["data"]["reason"] for r in revoked} == {"purchase refunded"}
    assert {c["status"] for c in student_enrollments(h.store, EMAIL)} == {"revoked"}


def test_refund_handled_before_its_approval_blocks_the_late_approval(h: Harness) -> None:
    h.map()
    h.pay("PURCHASE_REFUNDED", second=60)
    h.pay(second=0)
    assert h.enrolled() == set()
    assert h.lms.total_calls == 0
    assert h.outbox(ENROLLMENT_GRANTED) == []


def test_compensation_keeps_courses_another_active_purchase_covers(h: Harness) -> None:
    h.map()
    h.map("4712", {"course_ids": ["9", "11"]})
    h.pay(transaction="HP1", product="4711")
    h.pay(transaction="HP2", product="4712")
    h.pay("PURCHASE_CHARGEBACK", transaction="HP1", product="4711", second=30)
    assert h.enrolled() == {"9", "11"}
    assert {r["data"]["course_id"] for r in h.outbox(ENROLLMENT_REVOKED)} == {"7"}
    nine = next(c for c in student_enrollments(h.store, EMAIL) if c["course_id"] == "9")
    assert nine["granted_by"] == "tx:HP2"


def test_ignored_kinds_change_nothing(h: Harness) -> None:
    h.map()
    h.pay()
    before = dict(h.lms.calls)
    h.pay("PURCHASE_PROTEST", second=10)  # a dispute keeps access until the refund itself
    h.pay("PURCHASE_DELAYED", second=11)
    assert dict(h.lms.calls) == before
    assert h.enrolled() == {"7", "9"}


def test_unmapped_approval_is_parked_then_applied_once_mapped(h: Harness) -> None:
    h.pay()
    assert h.lms.total_calls == 0
    parked = h.outbox(ENROLLMENT_PARKED)
    assert len(parked) == 1
    assert parked[0]["data"]["reason"] == "no course mapping for product 4711"
    assert [p["product_id"] for p in h.catalogue.parked()] == ["4711"]
    h.pay(event_id="resend")  # a second approval event of the same purchase does not park twice
    assert len(h.outbox(ENROLLMENT_PARKED)) == 1
    assert redrive_parked(h.saga) == 0  # still unmapped
    h.map()
    assert redrive_parked(h.saga) == 1
    assert h.enrolled() == {"7", "9"}
    assert h.store.query(PARKED) == []


def test_plan_specific_courses(h: Harness) -> None:
    h.map(body={"course_ids": ["7"], "plans": {"102": ["7", "9", "11"]}})
    h.pay(subscriber="SUB-1", plan="102")
    assert h.enrolled() == {"7", "9", "11"}


def test_suspend_restore_expire_and_plan_change(h: Harness) -> None:
    h.map(body={"course_ids": ["7"], "plans": {"102": ["9", "11"]}})
    h.pay(subscriber="SUB-1", plan="101", second=0)
    assert h.enrolled() == {"7"}
    h.access(ACCESS_SUSPENDED, second=100)
    assert h.enrolled() == set()
    h.access(ACCESS_RESTORED, state="active", second=50)  # older than the suspension: ignored
    assert h.enrolled() == set()
    h.access(ACCESS_RESTORED, state="active", second=200)
    assert h.enrolled() == {"7"}
    h.access(PLAN_CHANGED, plan="102", previous_plan="101", state="active", second=300)
    assert h.enrolled() == {"9", "11"}
    h.access(ACCESS_EXPIRED, plan="102", state="expired", second=400)
    assert h.enrolled() == set()
    reasons = {r["data"]["reason"] for r in h.outbox(ENROLLMENT_REVOKED)}
    assert "access suspended: test" in reasons
    assert "access expired: test" in reasons


def test_transient_lms_error_raises_then_the_redelivery_finishes(h: Harness) -> None:
    h.map()
    event = payment_event()
    h.lms.fail_next("enroll", lambda: LmsTransientError("429 Too Many Requests"))
    with pytest.raises(LmsTransientError):
        h.payments(event, delivery())
    h.payments(event, delivery(attempt=2))
    assert h.enrolled() == {"7", "9"}
    assert len(h.outbox(ENROLLMENT_GRANTED)) == 2
    assert h.lms.calls["sign_up"] == 1  # the user id learnt before the error was kept


def test_a_pending_entitlement_whose_message_is_gone_is_reconciled(h: Harness) -> None:
    h.map()
    h.lms.fail_next("enroll", lambda: LmsTransientError("timeout"))
    with pytest.raises(LmsTransientError):
        h.payments(payment_event(), delivery())  # ...and the message never comes back
    assert h.enrolled() == set()
    statuses = {c["course_id"]: c["status"] for c in student_enrollments(h.store, EMAIL)}
    assert statuses == {"7": "pending", "9": "pending"}
    assert reconcile_stale(h.saga, stale_after=3600) == 0  # not stale yet: the bus may still redeliver
    assert reconcile_stale(h.saga, stale_after=0) == 2
    assert h.enrolled() == {"7", "9"}
    assert len(h.outbox(ENROLLMENT_GRANTED)) == 2
    assert reconcile_stale(h.saga, stale_after=0) == 0  # nothing left to do


def test_transient_error_after_a_success_keeps_that_success(h: Harness) -> None:
    h.map()
    event = payment_event()
    h.pay(event_id="warm-up", transaction="HP0", product="4711")  # student known, enrolled via HP0
    h.pay("PURCHASE_REFUNDED", transaction="HP0", second=5)
    h.lms.calls.clear()
    h.lms.fail_next("enroll", lambda: LmsTransientError("timeout"))
    with pytest.raises(LmsTransientError):
        h.payments(event, delivery())
    h.payments(event, delivery(attempt=2))
    assert h.enrolled() == {"7", "9"}


def test_permanent_lms_error_publishes_failed_and_acks(h: Harness) -> None:
    h.map(body={"course_ids": ["7", "404"]})
    h.pay()
    assert h.enrolled() == {"7"}
    failed = h.outbox(ENROLLMENT_FAILED)
    assert [(f["data"]["course_id"], f["data"]["reason"]) for f in failed] == [
        ("404", "The requested course does not exist")
    ]
    statuses = {c["course_id"]: c["status"] for c in student_enrollments(h.store, EMAIL)}
    assert statuses == {"7": "enrolled", "404": "failed"}


def test_permanent_signup_error_fails_every_course(h: Harness) -> None:
    h.map()
    h.lms.fail_next("sign_up", lambda: LmsPermanentError("A user with the same login already exists"))
    h.pay()
    assert len(h.outbox(ENROLLMENT_FAILED)) == 2
    assert h.enrolled() == set()


def test_approval_without_a_buyer_email_is_dead_lettered(h: Harness) -> None:
    event = payment_event()
    data = {**event.data, "buyer": None}
    with pytest.raises(PermanentFailure, match="e-mail"):
        h.payments(event.with_data(data), delivery())


def test_revocation_for_an_unknown_student_needs_no_lms_user(h: Harness) -> None:
    h.map()
    h.pay("PURCHASE_REFUNDED")
    assert h.lms.total_calls == 0
    assert h.store.query(ENTITLEMENTS) == []


# --- property: any order / duplication of one purchase's events, through the real service layer -------

EVENTS = {
    "approve": ("PURCHASE_APPROVED", True),
    "renew": ("PURCHASE_APPROVED", True),
    "complete": ("PURCHASE_COMPLETE", True),
    "refund": ("PURCHASE_REFUNDED", None),
    "chargeback": ("PURCHASE_CHARGEBACK", None),
    "suspend": (ACCESS_SUSPENDED, False),
    "expire": (ACCESS_EXPIRED, False),
    "restore": (ACCESS_RESTORED, True),
}


def _model(history: list[tuple[str, int]]) -> bool:
    if any(EVENTS[name][1] is None for name, _ in history):
        return False
    on = [t for name, t in history if EVENTS[name][1]]
    off = [t for name, t in history if EVENTS[name][1] is False]
    return bool(on) and (not off or max(on) > max(off))


@st.composite
def shuffled_histories(draw: st.DrawFn):
    names = st.sampled_from(sorted(EVENTS))
    history = draw(st.lists(st.tuples(names, st.integers(0, 120)), min_size=1, max_size=6, unique=True))
    delivered = draw(st.permutations(history + draw(st.lists(st.sampled_from(history), max_size=3))))
    return history, delivered


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shuffled_histories())
def test_property_final_lms_state_matches_the_model(case) -> None:
    history, delivered = case
    directory = Path(tempfile.mkdtemp())
    h = Harness(directory)
    try:
        h.map(body={"course_ids": ["7"]})
        events = {}
        for name, second in history:
            kind, _ = EVENTS[name]
            if kind.startswith("PURCHASE_"):
                events[(name, second)] = payment_event(
                    kind,
                    subscriber="SUB-1",
                    transaction=f"HP-{name}",
                    second=second,
                    event_id=f"{name}{second}",
                )
            else:
                state = {"restore": "active", "suspend": "suspended", "expire": "expired"}[name]
                events[(name, second)] = access_event(kind, state=state, second=second)
        for item in delivered:
            event = events[item]
            if event.type.startswith("coursebridge.payment."):
                h.payments(event, delivery())
            else:
                h.subscriptions(event, delivery("enrollment.subscriptions"))
        assert (h.enrolled() == {"7"}) == _model(history)
        assert h.lms.calls["enroll"] <= len(delivered)
    finally:
        h.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_payment_types_handled() -> None:
    assert payment_event_type("purchase_approved") in payments_dispatcher(None).handlers  # type: ignore[arg-type]
