"""Reconciliation end to end through real processes, down to the LMS.

The fake Hotmart holds two approvals, a refund and a subscription cancellation that no webhook announced.
One reconciliation round (``python -m ingest.entrypoints.reconcile``, as the CronJob runs it) must leave
the TalentLMS fake exactly right; then the fake sends the same webhooks late and nothing changes: ingest
answers them ``recovered_earlier`` (or ``duplicate``), and the LMS sees no further call.

Processes: the TalentLMS and Hotmart fakes, ingest (API + relay), enrollment (API + worker), subscription
(API + worker), on the embedded backend.

So that the refund and the cancellation have something to take away, the refunded purchase's approval and
the subscription's first charge were delivered on time; only their refund / cancellation went missing.
The subscription was cancelled two days ago and paid through twelve hours ago: a cancellation keeps
access until the paid-through date, which has passed, so its access must be expired (not merely
cancelled), while without the cancellation it would still be active (paid-through + 7 days of grace).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from stack_harness import Stack, lms_pairs, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
QUIET_SECONDS = 6.0  # longer than the relays' polls and the subscription sweep interval (5 s)


def webhook_outcomes(stack: Stack) -> dict[str, float]:
    """ingest's ``coursebridge_ingest_webhooks_total`` by outcome (all kinds together)."""
    text = requests.get(f"{stack.urls['ingest']}/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "coursebridge_ingest_webhooks":
            continue
        for metric in family.samples:
            if metric.name.endswith("_total"):
                outcome = metric.labels["outcome"]
                totals[outcome] = totals.get(outcome, 0.0) + metric.value
    return totals


def lms_view(stack: Stack) -> dict:
    state = stack.fake_state()
    return {
        "pairs": lms_pairs(state),
        "calls": state["calls"],
        "calls_total": state["calls_total"],
        "enrolled_total": state["enrolled_total"],
        "unenrolled_total": state["unenrolled_total"],
    }


def settled(stack: Stack, quiet: float = 2.0, timeout: float = 30.0) -> dict:
    """The LMS view once no call reached it for ``quiet`` seconds (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    view = lms_view(stack)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        again = lms_view(stack)
        if again == view:
            return view
        view = again
    raise AssertionError(f"the LMS kept receiving calls for {timeout} s: {view}")


def test_one_reconciliation_sets_the_lms_right_and_late_webhooks_change_nothing(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    one_off_a = f"one.off.a.{tag.lower()}@example.com"  # product 4711 -> courses 7 and 9
    one_off_b = f"one.off.b.{tag.lower()}@example.com"  # product 4712 -> course 12
    refunded = f"refunded.{tag.lower()}@example.com"  # product 4712, refunded
    member = f"member.{tag.lower()}@example.com"  # subscription to 4711, cancelled
    tx_a, tx_b, tx_refund, tx_member = (f"HPR{tag}{i:04d}" for i in range(1, 5))
    code = f"SUBR{tag}"

    with Stack(tmp_path, backend="embedded", subscription=True, hotmart=True) as stack:
        stack.map_products()
        now = int(time.time() * 1000)
        accession = now - 30 * DAY_MS - 12 * HOUR_MS  # monthly: paid through now - 12 h
        stack.hotmart(
            "subscriptions",
            {
                "subscriber_code": code,
                "product_id": 4711,
                "email": member,
                "transaction": tx_member,
                "accession_date": accession,
                "recurrency_period": 30,
                "plan_id": 101,
                "plan_name": "Monthly",
            },
        )
        stack.hotmart(
            "sales",
            [
                {
                    "transaction": tx_member,
                    "product_id": 4711,
                    "buyer_email": member,
                    "order_date": accession,
                    "subscriber_code": code,
                    "recurrency_number": 1,
                },
                {
                    "transaction": tx_refund,
                    "product_id": 4712,
                    "buyer_email": refunded,
                    "order_date": now - 30 * HOUR_MS,
                },
            ],
        )

        # Delivered on time: the subscription's first charge and the approval to be refunded later.
        on_time = stack.send_hotmart_webhooks(transactions=[tx_member, tx_refund])
        assert [s["status"] for s in on_time] == [200, 200], on_time
        before = {(member, "7"), (member, "9"), (refunded, "12")}
        wait_for(lambda: lms_pairs(stack.fake_state()) == before, "the on-time approvals to enroll", 90)

        # Never announced: two approvals, the refund, and the subscription's cancellation.
        stack.hotmart(
            "sales",
            [
                {
                    "transaction": tx_a,
                    "product_id": 4711,
                    "buyer_email": one_off_a,
                    "order_date": now - 2 * HOUR_MS,
                },
                {
                    "transaction": tx_b,
                    "product_id": 4712,
                    "buyer_email": one_off_b,
                    "order_date": now - 3 * HOUR_MS,
                },
            ],
        )
        stack.hotmart(f"sales/{tx_refund}/status", {"status": "REFUNDED", "at": now - HOUR_MS})
        stack.hotmart(f"subscriptions/{code}/cancel", {"at": now - 2 * DAY_MS})
        time.sleep(1.0)
        assert lms_pairs(stack.fake_state()) == before  # nothing reached CourseBridge yet

        report = stack.reconcile()
        assert report["recovered"] == {
            "purchase_approved": 2,
            "purchase_refunded": 1,
            "subscription_cancellation": 1,
        }, report
        assert [m["subscriber_code"] for m in report["status_mismatches"]] == [code]

        expected = {(one_off_a, "7"), (one_off_a, "9"), (one_off_b, "12")}
        wait_for(
            lambda: lms_pairs(stack.fake_state()) == expected,
            "the LMS to match Hotmart after one reconciliation",
            90,
        )
        after_reconciliation = settled(stack)
        assert after_reconciliation["pairs"] == expected
        access = {c["course_id"]: c["status"] for c in stack.student(member)}
        assert access == {"7": "revoked", "9": "revoked"}, access
        outcomes_before = webhook_outcomes(stack)

        # Hotmart delivers the same webhooks late: recorded, never acted on again.
        late = stack.send_hotmart_webhooks(transactions=[tx_a, tx_b, tx_refund], subscriber_codes=[code])
        events = sorted(s["event"] for s in late)
        assert events == sorted(
            ["PURCHASE_APPROVED"] * 3 + ["PURCHASE_REFUNDED", "SUBSCRIPTION_CANCELLATION"]
        ), late
        assert all(s["status"] == 200 for s in late), late
        on_time_ids = {s["id"] for s in on_time}
        records = {s["id"]: stack.webhook_status(s["id"]) for s in late}
        for sent in late:
            record = records[sent["id"]]
            assert record is not None, sent
            if sent["id"] in on_time_ids:  # the refunded purchase's approval, a resend of the on-time one
                assert record["status"] == "published", (sent, record["status"])
            else:
                assert record["status"] == "recovered_earlier", (sent, record["status"])
        outcomes = webhook_outcomes(stack)
        grew = {k: v - outcomes_before.get(k, 0.0) for k, v in outcomes.items()}
        assert {k: v for k, v in grew.items() if v} == {"recovered_earlier": 4.0, "duplicate": 1.0}, grew

        time.sleep(QUIET_SECONDS)
        assert settled(stack) == after_reconciliation
        assert stack.alive() == dict.fromkeys(stack.children, True), stack.logs()
