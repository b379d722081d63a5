"""Sample TalentLMS activity for ``make samples``: what enrollment publishes when it reads TalentLMS.

Enrollment reads sign-ins and course completions from TalentLMS's timeline only when it has TalentLMS
credentials, and a local stack's fake TalentLMS has no one signing in. So that a fresh ``make run`` +
``make samples`` shows the analytics Learning views, the samples add the activity of the sample buyers
on the ``learning`` topic of the local (embedded) bus, exactly as enrollment would publish it: the
subscription buyer signs in an hour after buying and completes the course five days later, the
one-off buyer who is refunded later signs in after three hours (and once more after the refund, which
is not progress), the buyer who charges back never signs in, the last one-off buyer signs in a day
later. Ids are deterministic, so running the samples again adds nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from coursebridge.events import Event
from coursebridge.events.envelope import format_time, new_event
from coursebridge.events.learning import LEARNING_COURSE_COMPLETED, LEARNING_SIGNED_IN
from coursebridge.topology import LEARNING

_NAMESPACE = uuid.UUID("0c6f3e8a-51d4-4a8e-9d3c-6a7b1e2f4c55")
# transaction -> (TalentLMS user id, [(activity, hours after approval, course id)]); "refund" = after it
STORY: dict[str, tuple[str, list[tuple[str, float, str | None]]]] = {
    "HP1000000001": (
        "101",
        [("signed_in", 1, None), ("signed_in", 50, None), ("course_completed", 120, "7")],
    ),
    "HP2000000001": ("102", [("signed_in", 3, None), ("signed_in", 24 * 12, None)]),
    "HP2000000002": ("103", []),
    "HP2000000005": ("104", [("signed_in", 26, None)]),
}


def _approvals(samples: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[datetime, str, str | None]]:
    """transaction -> (approval time, product id, subscriber code) of the approved sample purchases."""
    out: dict[str, tuple[datetime, str, str | None]] = {}
    for _name, body in samples:
        data = body.get("data") or {}
        purchase = data.get("purchase") or {}
        if body.get("event") != "PURCHASE_APPROVED" or not purchase.get("transaction"):
            continue
        millis = purchase.get("approved_date") or body.get("creation_date")
        subscriber = ((data.get("subscription") or {}).get("subscriber") or {}).get("code")
        out[purchase["transaction"]] = (
            datetime.fromtimestamp(int(millis) / 1000, UTC),
            str((data.get("product") or {}).get("id")),
            subscriber,
        )
    return out


def learning_events(samples: list[tuple[str, dict[str, Any]]], now: datetime) -> list[Event]:
    """The sample buyers' activity, each observed 15 minutes after it happened; nothing in the future."""
    approvals = _approvals(samples)
    events = []
    for transaction, (user, story) in STORY.items():
        if transaction not in approvals:
            continue
        approved, product, subscriber = approvals[transaction]
        access_id = f"sub:{subscriber}:{product}" if subscriber else f"tx:{transaction}"
        purchases = [{"access_id": access_id, "transaction": transaction, "product_id": product}]
        for activity, hours, course in story:
            at = approved + timedelta(hours=hours)
            observed = at + timedelta(minutes=15)
            if observed > now:
                continue
            activity_id = f"la-sample-{activity}-{user}-{course or 0}-{int(at.timestamp())}"
            events.append(
                new_event(
                    LEARNING_SIGNED_IN if activity == "signed_in" else LEARNING_COURSE_COMPLETED,
                    {
                        "activity_id": activity_id,
                        "activity": activity,
                        "lms_user_id": user,
                        "course_id": course,
                        "occurred_at": format_time(at),
                        "observed_at": format_time(observed),
                        "purchases": purchases,
                    },
                    source="coursebridge/enrollment",
                    subject=user,
                    event_id=str(uuid.uuid5(_NAMESPACE, activity_id)),
                    time=observed,
                )
            )
    return events


def publish(events: list[Event]) -> int:
    """Publish on the local stack's embedded bus; returns how many (0 on a GCP backend: never there)."""
    from coursebridge.backends import open_bus
    from coursebridge.config import PlatformSettings

    settings = PlatformSettings.from_env("ingest")
    if settings.backend != "embedded":
        return 0
    bus = open_bus(settings)
    for event in events:
        bus.publish(LEARNING, event, ordering_key=event.data["lms_user_id"])
    return len(events)
