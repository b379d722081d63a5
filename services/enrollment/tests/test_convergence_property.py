"""Property: whatever happens — events in any order and repeated, mapping changes, crashes between intent
and call, calls whose outcome is lost, users deleted and courses removed by hand in TalentLMS — once the
controller is quiet (queue drained, then one drift audit and a final drain), TalentLMS equals desired state.

Desired state is computed here by a model written independently of the domain code: a purchase grants while
its latest grant is newer than its latest suspension and no refund was seen; a course is wanted when some
granting purchase's product maps to it (for the purchase's latest plan) in the *final* mapping.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coursebridge.events.access import ACCESS_RESTORED, ACCESS_SUSPENDED, PLAN_CHANGED
from enrollment.domain.mapping import parse_mapping
from enrollment.service_layer.ports import LmsRateLimited

sys.path.insert(0, str(Path(__file__).parent))
from controller_support import Harness

BUYERS = ("ana@example.com", "bia@example.com", "caio@example.com")
PRODUCTS = ("4711", "4712")
COURSES = ("7", "9", "11")
FOREIGN_COURSE = "12"  # never mapped: only people enroll it by hand


class Crash(Exception):
    """The dispatcher's process dies."""


purchase = st.tuples(st.sampled_from(BUYERS), st.sampled_from(PRODUCTS))
mapping_body = st.fixed_dictionaries(
    {"course_ids": st.lists(st.sampled_from(COURSES), min_size=1, max_size=3, unique=True)},
    optional={
        "plans": st.fixed_dictionaries(
            {"102": st.lists(st.sampled_from(COURSES), min_size=1, max_size=3, unique=True)}
        )
    },
)
operation = st.one_of(
    st.tuples(st.just("pay"), purchase, st.sampled_from(["APPROVED", "REFUNDED"]), st.integers(0, 50)),
    st.tuples(
        st.just("access"), purchase, st.sampled_from(["suspend", "restore", "plan"]), st.integers(0, 50)
    ),
    st.tuples(st.just("map"), st.sampled_from(PRODUCTS), mapping_body),
    st.tuples(st.just("unmap"), st.sampled_from(PRODUCTS)),
    st.tuples(st.just("round"), st.integers(1, 3)),
    st.tuples(st.just("crash"), st.sampled_from(["enroll", "unenroll", "sign_up", "batch_enroll"])),
    st.tuples(st.just("lost_answer"), st.sampled_from(["enroll", "unenroll", "sign_up", "batch_enroll"])),
    st.tuples(st.just("rate_limited"), st.sampled_from(["enroll", "unenroll"])),
    st.tuples(st.just("delete_user"), st.sampled_from(BUYERS)),
    st.tuples(st.just("remove_by_hand"), st.sampled_from(BUYERS), st.sampled_from(COURSES)),
    st.tuples(st.just("foreign"), st.sampled_from(BUYERS)),
)


class Model:
    def __init__(self) -> None:
        self.grants: dict[tuple, list[int]] = {}
        self.offs: dict[tuple, list[int]] = {}
        self.refunded: set[tuple] = set()
        self.plan: dict[tuple, tuple[int, str]] = {}
        self.mappings: dict[str, dict | None] = {}
        self.foreign: dict[str, bool] = {}

    def wanted(self, buyer: str) -> set[str]:
        courses: set[str] = set()
        for key, times in self.grants.items():
            if key[0] != buyer or key in self.refunded:
                continue
            offs = self.offs.get(key, [])
            if offs and max(offs) >= max(times):
                continue
            body = self.mappings.get(key[1])
            if body is None:
                continue
            plan = self.plan.get(key, (0, "101"))[1]
            courses |= set((body.get("plans") or {}).get(plan, body["course_ids"]))
        return courses


def _subscriber(buyer: str, product: str) -> str:
    return f"SUB-{BUYERS.index(buyer)}-{product}"


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.lists(operation, min_size=3, max_size=25), st.booleans())
@example(  # the answer of an enrollment is lost, then the purchase is refunded before anyone looked
    [
        ("map", "4711", {"course_ids": ["7"]}),
        ("pay", ("ana@example.com", "4711"), "APPROVED", 0),
        ("lost_answer", "enroll"),
        ("round", 1),
        ("pay", ("ana@example.com", "4711"), "REFUNDED", 10),
    ],
    False,
)
@example(  # the dispatcher dies right after TalentLMS enrolled, and the access is suspended meanwhile
    [
        ("map", "4711", {"course_ids": ["7", "9"]}),
        ("pay", ("bia@example.com", "4711"), "APPROVED", 0),
        ("crash", "enroll"),
        ("round", 1),
        ("access", ("bia@example.com", "4711"), "suspend", 20),
    ],
    False,
)
def test_after_quiescence_talentlms_equals_desired_state(operations, batches) -> None:
    directory = Path(tempfile.mkdtemp())
    h = Harness(directory, batch_threshold=2 if batches else 0)
    model = Model()
    try:
        for op in operations:
            kind = op[0]
            if kind == "pay":
                (buyer, product), status, second = op[1], op[2], op[3]
                key = (buyer, product)
                h.pay(
                    f"PURCHASE_{status}",
                    email=buyer,
                    product=product,
                    subscriber=_subscriber(buyer, product),
                    plan="101",
                    transaction=f"HP-{_subscriber(buyer, product)}",
                    second=second,
                )
                if status == "APPROVED":
                    model.grants.setdefault(key, []).append(second)
                else:
                    model.refunded.add(key)
            elif kind == "access":
                (buyer, product), what, second = op[1], op[2], op[3]
                key = (buyer, product)
                access_id = f"sub:{_subscriber(buyer, product)}:{product}"
                if what == "suspend":
                    h.access(
                        ACCESS_SUSPENDED, access_id=access_id, product=product, email=buyer, second=second
                    )
                    model.offs.setdefault(key, []).append(second)
                elif what == "restore":
                    h.access(
                        ACCESS_RESTORED,
                        access_id=access_id,
                        product=product,
                        email=buyer,
                        state="active",
                        second=second,
                    )
                    model.grants.setdefault(key, []).append(second)
                else:
                    h.access(
                        PLAN_CHANGED,
                        access_id=access_id,
                        product=product,
                        email=buyer,
                        plan="102",
                        state="active",
                        second=second,
                    )
                    if second >= model.plan.get(key, (-1, ""))[0]:
                        model.plan[key] = (second, "102")
            elif kind == "map":
                h.catalogue.put(parse_mapping(op[1], op[2]))
                model.mappings[op[1]] = op[2]
            elif kind == "unmap":
                h.catalogue.delete(op[1])
                model.mappings[op[1]] = None
            elif kind == "round":
                for _ in range(op[1]):
                    try:
                        h.dispatcher.run_round()
                    except Crash:
                        h.restart()
                    h.clock.now += 30
            elif kind == "crash":
                h.lms.fail_next(op[1], Crash, when="after")
            elif kind == "lost_answer":
                h.lms.in_doubt_after(op[1])
            elif kind == "rate_limited":
                h.lms.fail_next(op[1], lambda: LmsRateLimited("429", 10.0))
            elif kind == "delete_user":
                user = h.lms.user_by_email(op[1])
                if user is not None:
                    h.lms.delete_user(user.id)
                    model.foreign[op[1]] = False
            elif kind == "remove_by_hand":
                user = h.lms.user_by_email(op[1])
                if user is not None:
                    h.lms.unenroll_by_hand(user.id, op[2])
            elif kind == "foreign":
                user = h.lms.user_by_email(op[1])
                if user is not None:
                    h.lms.enroll_by_hand(user.id, FOREIGN_COURSE)
                    model.foreign[op[1]] = True

        _quiesce(h)

        for buyer in BUYERS:
            expected = model.wanted(buyer) | ({FOREIGN_COURSE} if model.foreign.get(buyer) else set())
            assert h.enrolled(buyer) == expected, buyer
            assert not h.record(buyer).in_doubt
    finally:
        h.close()
        shutil.rmtree(directory, ignore_errors=True)


def _quiesce(h: Harness) -> None:
    """Let every background task finish, drain, audit (catches hand edits), drain again."""
    h.lms._faults.clear()
    h.lms.run_pending_tasks()
    for _ in range(3):
        try:
            h.drain()
            break
        except Crash:
            h.restart()
    audit = h.dispatcher.audit
    assert audit is not None
    audit.interval = 1
    h.clock.now += 10
    while audit.due():
        audit.step(None, seconds=5)
        if audit._run is None:
            break
    h.drain()
