"""Learning property tests: random streams of purchases (one-off and subscriptions with renewals), full and
partial refunds, chargebacks and TalentLMS activity (sign-ins before and after the approval and after a
refund, completions, activity attributed to a renewal, to an unknown purchase or to none, redeliveries
and re-reads of the same activity); the learning views equal the plain-Python reference.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.service_layer.projector import project_events, rebuild
from analytics.synthetic import generate_events, learning_event, learning_events_for, payment_event
from analytics.views import LEARNING_VIEWS

from . import reference
from .conftest import KEY

START = datetime(2025, 1, 1, 9, tzinfo=UTC)
REVERSALS = ("refund", "partial_refund", "chargeback")
# Activity (kind, hours after the approval, which charge it is attributed to, re-read?)
activity = st.tuples(
    st.sampled_from(("signed_in", "signed_in", "course_completed")),
    st.sampled_from((0, -1, 1, 24)) | st.integers(-30, 24 * 50),  # 0: at the very approval
    st.sampled_from(("first", "renewal", "unknown", "none")),
    st.booleans(),
)
purchase = st.fixed_dictionaries(
    {
        "product": st.sampled_from(("4711", "4712")),
        "day": st.integers(0, 80),
        "renewals": st.integers(0, 2),
        # (reversal kind, which charge, hours after that charge's approval)
        "reversals": st.lists(
            st.tuples(
                st.sampled_from(REVERSALS),
                st.integers(0, 2),
                st.sampled_from((1, 24)) | st.integers(0, 24 * 20),
            ),
            max_size=2,
        ),
        "activity": st.lists(activity, max_size=6),
    }
)


def build_stream(purchases: list[dict[str, Any]], redeliver: list[int]) -> list:
    events = []
    for n, p in enumerate(purchases):
        subscriber = f"SUB{n}" if p["renewals"] else None
        approved = START + timedelta(days=p["day"], minutes=n)
        charges = []
        for recurrence in range(p["renewals"] + 1):
            transaction = f"HP{n:05d}{recurrence}"
            at = approved + timedelta(days=30 * recurrence)
            charges.append((transaction, at))
            common = {
                "transaction": transaction,
                "product": p["product"],
                "currency": "BRL",
                "price": "100.00",
                "recurrence": recurrence + 1 if subscriber else None,
                "subscriber": subscriber,
            }
            events.append(payment_event("purchase_approved", event_id=f"a{n}.{recurrence}", at=at, **common))
            for i, (kind, charge, hours) in enumerate(p["reversals"]):
                if charge != recurrence:
                    continue
                events.append(
                    payment_event(
                        "purchase_chargeback" if kind == "chargeback" else "purchase_refunded",
                        event_id=f"r{n}.{recurrence}.{i}",
                        at=at + timedelta(hours=hours),
                        status="partially_refunded" if kind == "partial_refund" else None,
                        **common,
                    )
                )
        for i, (kind, hours, target, reread) in enumerate(p["activity"]):
            transaction = {
                "first": charges[0][0],
                "renewal": charges[-1][0],
                "unknown": f"HPX{n}",
                "none": None,
            }[target]
            at = approved + timedelta(hours=hours)
            common = {
                "activity_id": f"la-{n}-{i}",
                "at": at,
                "lms_user_id": str(n),
                "purchases": [] if transaction is None else [(transaction, p["product"])],
                "course_id": "7",
            }
            events.append(learning_event(kind, event_id=f"l{n}.{i}", **common))
            if reread:  # the timeline read again: same activity, another event id, observed later
                events.append(
                    learning_event(
                        kind, event_id=f"l{n}.{i}.again", observed=at + timedelta(hours=5), **common
                    )
                )
    if events:
        events += [events[i % len(events)] for i in redeliver]  # the bus redelivers: same event id
    return events


def _views(events: list) -> tuple[dict, dict, dict]:
    warehouse = DuckDBWarehouse(Path(tempfile.mkdtemp(prefix="learning-")) / "a.duckdb")
    warehouse.migrate()
    project_events(warehouse, events, KEY)
    purchases = {
        r["transaction"]: {
            "product_id": r["product_id"],
            "cohort_month": r["cohort_month"].isoformat(),
            **{k: r[k] for k in ("approved_at", "refunded_at", "charged_back_at", "reversed_at")},
            **{k: r[k] for k in ("first_access_at", "completed_at", "progress", "first_access_hours")},
        }
        for r in warehouse.query_view("learning_purchases")
    }
    cohorts = {
        (r["product_id"], r["cohort_month"].isoformat()): _rounded(
            {k: v for k, v in r.items() if k not in ("product_id", "cohort_month")}
        )
        for r in warehouse.query_view("learning_cohorts")
    }
    by_progress = {
        (r["product_id"], r["bucket"]): {k: r[k] for k in ("buyers", "refunded", "refund_rate")}
        for r in warehouse.query_view("refund_rate_by_progress")
    }
    return purchases, cohorts, by_progress


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """Medians interpolate in floating point: equal to 9 places, not to the last bit."""
    return {k: round(v, 9) if isinstance(v, float) else v for k, v in row.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    purchases=st.lists(purchase, min_size=1, max_size=8),
    redeliver=st.lists(st.integers(0, 200), max_size=6),
)
def test_learning_views_equal_the_python_reference(purchases, redeliver):
    events = build_stream(purchases, redeliver)
    got_purchases, got_cohorts, got_progress = _views(events)
    assert got_purchases == reference.learning_purchases(events)
    assert got_cohorts == {k: _rounded(v) for k, v in reference.learning_cohorts(events).items()}
    assert got_progress == reference.refund_rate_by_progress(events)
    # Renewals are charges of their subscription, never new buyers.
    assert len(got_purchases) == len(purchases)


def _signed_in(n: int, hours: float, transaction: str = "HP1", activity_id: str | None = None, **kw):
    return learning_event(
        "signed_in",
        activity_id=activity_id or f"la-{n}",
        event_id=f"l{n}",
        at=START + timedelta(hours=hours),
        lms_user_id="12",
        purchases=[(transaction, "4712")],
        **kw,
    )


def _approved(transaction: str = "HP1", hours: float = 0):
    return payment_event(
        "purchase_approved",
        event_id=f"a-{transaction}",
        at=START + timedelta(hours=hours),
        transaction=transaction,
        product="4712",
        currency="BRL",
        price="100.00",
    )


def test_first_access_is_the_first_sign_in_at_or_after_the_approval_and_before_the_refund():
    refund = payment_event(
        "purchase_refunded",
        event_id="r-HP1",
        at=START + timedelta(hours=50),
        transaction="HP1",
        product="4712",
        currency="BRL",
        price="100.00",
    )
    events = [
        _approved(hours=10),
        _signed_in(1, 9),  # before buying: another purchase's access
        _signed_in(2, 13.5),
        _signed_in(3, 12.5, observed=START + timedelta(hours=60)),  # read late, still the first
        _signed_in(4, 55),  # after the refund
        refund,
    ]
    purchases, cohorts, progress = _views(events)
    row = purchases["HP1"]
    assert row["first_access_at"] == datetime(2025, 1, 1, 21, 30)
    assert row["first_access_hours"] == 2.5
    assert row["progress"] == "started" and row["refunded_at"] == datetime(2025, 1, 3, 11)
    assert cohorts[("4712", "2025-01-01")]["first_access_hours_median"] == 2.5
    assert progress == {("4712", "started"): {"buyers": 1, "refunded": 1, "refund_rate": 1.0}}


def test_a_replayed_activity_counts_once_and_a_median_interpolates():
    events = [
        _approved("HP1"),
        _approved("HP2"),
        _signed_in(1, 1, "HP1"),
        _signed_in(2, 4, "HP2"),
        _signed_in(3, 4, "HP2", activity_id="la-2"),  # the same timeline entry read again
    ]
    _, cohorts, _ = _views(events)
    assert cohorts[("4712", "2025-01-01")]["first_access_hours_median"] == 2.5
    assert cohorts[("4712", "2025-01-01")]["started"] == 2


def test_a_sign_in_at_the_approval_counts_and_one_at_the_chargeback_does_not():
    chargeback = payment_event(
        "purchase_chargeback",
        event_id="c-HP2",
        at=START + timedelta(hours=3),
        transaction="HP2",
        product="4712",
        currency="BRL",
        price="100.00",
    )
    events = [
        _approved("HP1"),
        _approved("HP2"),
        chargeback,
        _signed_in(1, 0, "HP1"),
        _signed_in(2, 3, "HP2"),
    ]
    purchases, _, progress = _views(events)
    assert purchases["HP1"]["first_access_hours"] == 0.0 and purchases["HP1"]["progress"] == "started"
    assert purchases["HP2"]["first_access_at"] is None and purchases["HP2"]["progress"] == "never_started"
    assert purchases["HP2"]["charged_back_at"] == datetime(2025, 1, 1, 12)
    assert progress[("4712", "never_started")] == {"buyers": 1, "refunded": 1, "refund_rate": 1.0}


def test_a_rebuild_from_the_raw_log_gives_the_same_learning_views(warehouse):
    payments = list(generate_events(400, seed=6))
    learning = learning_events_for(payments, seed=7)
    project_events(warehouse, payments + learning, KEY)
    before = {view: warehouse.query_view(view) for view in LEARNING_VIEWS}
    rows = warehouse.count("learning")
    assert rebuild(warehouse, KEY, batch_size=101) == warehouse.count("events")
    assert {view: warehouse.query_view(view) for view in LEARNING_VIEWS} == before
    assert warehouse.count("learning") == rows == len({e.id for e in learning})
    assert sum(r["completed"] for r in before["learning_cohorts"]) > 0


def test_one_activity_attributed_to_two_purchases_counts_for_both_once(warehouse):
    both = learning_event(
        "signed_in",
        activity_id="la-both",
        event_id="l-both",
        at=START + timedelta(hours=2),
        lms_user_id="12",
        purchases=[("HP1", "4712"), ("HP2", "4712")],
    )
    project_events(warehouse, [_approved("HP1"), _approved("HP2"), both, both], KEY)
    project_events(warehouse, [both], KEY)  # redelivered in a later batch
    assert warehouse.query("SELECT COUNT(*) AS n FROM coursebridge.learning")[0]["n"] == 2
    assert warehouse.count("learning") == 1  # one event
    purchases = {r["transaction"]: r for r in warehouse.query_view("learning_purchases")}
    assert {t: r["progress"] for t, r in purchases.items()} == {"HP1": "started", "HP2": "started"}
