"""Enrollment events: what the saga did for one student and one course."""

from __future__ import annotations

from coursebridge.events.contracts import EventContract, register_contract
from coursebridge.topology import ENROLLMENTS

ENROLLMENT_GRANTED = "coursebridge.enrollment.granted.v1"
ENROLLMENT_REVOKED = "coursebridge.enrollment.revoked.v1"
ENROLLMENT_FAILED = "coursebridge.enrollment.failed.v1"
ENROLLMENT_PARKED = "coursebridge.enrollment.parked.v1"
ORDERING_KEY = "`entitlement_id` (student x course)"

_EXAMPLE = {
    "entitlement_id": "ent-3f2a9c0d1e",
    "email": "ana.souza@example.com",
    "lms_user_id": "12",
    "course_id": "7",
    "product_id": "4711",
    "transaction": "HP1000000001",
    "access_id": "sub:SUB-A1B2C3:4711",
    "reason": None,
    "occurred_at": "2025-03-03T12:00:06.000Z",
}

for _type, _description, _example in (
    (ENROLLMENT_GRANTED, "The student is enrolled in the course on TalentLMS.", _EXAMPLE),
    (
        ENROLLMENT_REVOKED,
        "The student was removed from the course (compensation: refund, chargeback, suspension, expiry).",
        {**_EXAMPLE, "reason": "purchase refunded"},
    ),
    (
        ENROLLMENT_FAILED,
        "TalentLMS refused permanently; the reason says why. Needs a person.",
        {**_EXAMPLE, "reason": "The requested course does not exist"},
    ),
    (
        ENROLLMENT_PARKED,
        "Approved purchase of a product with no course mapping yet: applied once a mapping exists.",
        {**_EXAMPLE, "course_id": None, "lms_user_id": None, "reason": "no course mapping for product 4711"},
    ),
):
    register_contract(
        EventContract(
            type=_type,
            topic=ENROLLMENTS,
            schema_name="enrollment_change.v1",
            producer="enrollment",
            description=_description,
            ordering_key=ORDERING_KEY,
            example=_example,
        )
    )
