"""Learning events: what buyers do on TalentLMS, read from its timeline by enrollment.

TalentLMS sends no webhooks, so enrollment (the only service that talks to TalentLMS, and the holder of the
deployment's one call budget) polls the timeline within a small share of the hourly quota and publishes
each new entry once, attributed to the purchases that gave the access. Analytics projects them into the
learning views (completion, time to first access, refund rate by progress).
"""

from __future__ import annotations

from coursebridge.events.contracts import EventContract, register_contract
from coursebridge.topology import LEARNING

LEARNING_SIGNED_IN = "coursebridge.learning.signed_in.v1"
LEARNING_COURSE_COMPLETED = "coursebridge.learning.course_completed.v1"
ORDERING_KEY = "`lms_user_id`"
SCHEMA = "learning_activity.v1"

_EXAMPLE = {
    "activity_id": "la-user_login_user-12-0-1741003206",
    "activity": "signed_in",
    "lms_user_id": "12",
    "course_id": None,
    "occurred_at": "2025-03-03T12:00:06.000Z",
    "observed_at": "2025-03-03T12:15:00.000Z",
    "purchases": [{"access_id": "tx:HP1000000001", "transaction": "HP1000000001", "product_id": "4711"}],
}

for _type, _description, _example in (
    (
        LEARNING_SIGNED_IN,
        "The buyer signed in to TalentLMS (timeline `user_login_user`); the first one after a purchase is "
        "its first access.",
        _EXAMPLE,
    ),
    (
        LEARNING_COURSE_COMPLETED,
        "TalentLMS marked the course completed for the buyer (timeline `course_completion`).",
        {
            **_EXAMPLE,
            "activity_id": "la-course_completion-12-7-1741607999",
            "activity": "course_completed",
            "course_id": "7",
            "occurred_at": "2025-03-10T11:59:59.000Z",
        },
    ),
):
    register_contract(
        EventContract(
            type=_type,
            topic=LEARNING,
            schema_name=SCHEMA,
            producer="enrollment",
            description=_description,
            ordering_key=ORDERING_KEY,
            example=_example,
        )
    )
