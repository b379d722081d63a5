"""``make samples`` adds the sample buyers' TalentLMS activity: contract-valid, deterministic, never ahead
of now, and telling the story the Learning views show (completed, started then refunded, never started)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

from coursebridge.events.contracts import validate_event
from ingest.entrypoints.sample_learning import learning_events
from ingest.entrypoints.send_samples import load_samples, redate

TODAY = date(2027, 2, 14)
NOW = datetime(2027, 2, 14, 8, tzinfo=UTC)


def test_sample_activity_is_valid_deterministic_and_in_the_past():
    samples = redate(load_samples(), TODAY)
    events = learning_events(samples, NOW)
    for event in events:
        validate_event(event)
        assert event.source == "coursebridge/enrollment"
        assert event.data["observed_at"] > event.data["occurred_at"]
        assert event.time <= NOW
    again = learning_events(samples, NOW)
    assert [e.id for e in again] == [e.id for e in events]  # a second run is deduplicated
    by_purchase = Counter((e.data["purchases"][0]["transaction"], e.data["activity"]) for e in events)
    assert by_purchase == {
        ("HP1000000001", "signed_in"): 2,
        ("HP1000000001", "course_completed"): 1,
        ("HP2000000001", "signed_in"): 2,  # the second one after its refund
        ("HP2000000005", "signed_in"): 1,
    }
    subscription = next(e for e in events if e.data["purchases"][0]["transaction"] == "HP1000000001")
    assert subscription.data["purchases"][0]["access_id"].startswith("sub:")


def test_nothing_is_sent_ahead_of_now():
    samples = redate(load_samples(), TODAY)
    approvals = [
        b
        for _, b in samples
        if b["event"] == "PURCHASE_APPROVED" and b["data"]["purchase"]["transaction"] == "HP2000000005"
    ]
    approved = datetime.fromtimestamp(int(approvals[0]["data"]["purchase"]["approved_date"]) / 1000, UTC)
    events = learning_events(samples, approved)  # the moment of that approval: its sign-in is still to come
    assert not [e for e in events if e.data["purchases"][0]["transaction"] == "HP2000000005"]
