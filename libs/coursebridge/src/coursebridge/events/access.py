"""Access events: the subscription service's decisions that change course access."""

from __future__ import annotations

from coursebridge.events.contracts import EventContract, register_contract
from coursebridge.topology import SUBSCRIPTIONS

ACCESS_SUSPENDED = "coursebridge.subscription.access_suspended.v1"
ACCESS_RESTORED = "coursebridge.subscription.access_restored.v1"
ACCESS_EXPIRED = "coursebridge.subscription.access_expired.v1"
PLAN_CHANGED = "coursebridge.subscription.plan_changed.v1"
ORDERING_KEY = "`access_id` (`sub:<subscriber code>:<product id>` or `tx:<transaction>`)"

_EXAMPLE = {
    "access_id": "sub:SUB-A1B2C3:4711",
    "subscriber_code": "SUB-A1B2C3",
    "transaction": "HP1000000003",
    "product_id": "4711",
    "plan_id": "101",
    "previous_plan_id": None,
    "email": "ana.souza@example.com",
    "state": "suspended",
    "reason": "payment overdue beyond the 7-day grace period",
    "effective_at": "2025-05-10T12:00:00.000Z",
    "paid_through": "2025-05-03T12:00:00.000Z",
    "version": 3,
}

for _type, _description, _example in (
    (ACCESS_SUSPENDED, "A past-due subscription's grace period ended: revoke its courses.", _EXAMPLE),
    (
        ACCESS_RESTORED,
        "A suspended subscription was paid again: re-grant its courses.",
        {**_EXAMPLE, "state": "active", "reason": "renewal approved (recurrence 2)", "version": 4},
    ),
    (
        ACCESS_EXPIRED,
        "Paid-through date or fixed term reached (after a cancellation, or a product with access_days).",
        {**_EXAMPLE, "state": "expired", "reason": "cancelled; paid-through date reached"},
    ),
    (
        PLAN_CHANGED,
        "A subscriber switched plans: re-map the courses of the new plan.",
        {
            **_EXAMPLE,
            "state": "active",
            "plan_id": "102",
            "previous_plan_id": "101",
            "reason": "plan switched",
        },
    ),
):
    register_contract(
        EventContract(
            type=_type,
            topic=SUBSCRIPTIONS,
            schema_name="subscription_access.v1",
            producer="subscription",
            description=_description,
            ordering_key=ORDERING_KEY,
            example=_example,
        )
    )
