"""Access events: the subscription service's decisions that change course access."""

from __future__ import annotations

from coursebridge.events.contracts import EventContract, register_contract
from coursebridge.topology import SUBSCRIPTIONS

ACCESS_SUSPENDED = "coursebridge.subscription.access_suspended.v1"
ACCESS_RESTORED = "coursebridge.subscription.access_restored.v1"
ACCESS_EXPIRED = "coursebridge.subscription.access_expired.v1"
PLAN_CHANGED = "coursebridge.subscription.plan_changed.v1"
ORDERING_KEY = "`access_id` (`sub:<subscriber code>:<product id>` or `tx:<transaction>`)"

# How time works for access changes across services; rendered into docs/events.md.
TIME_SEMANTICS = """\
Every access event (`subscription_access.v1`) carries two different notions of time, and consumers must
not mix them up:

- **`effective_at`: business time.** When the change takes effect in the buyer's world: the grace
  deadline for a suspension, the paid-through date or the end of a fixed term for an expiry, the
  approval time for a restoration. It is for people, reports and analytics. Two events' `effective_at`
  do **not** say which decision is newer: a renewal paid on day 36 but processed after the day-37 sweep
  restores with `effective_at` day 36, older than the suspension it undoes.
- **`version`: decision order.** The access's own change counter in the subscription service's store
  (1, 2, 3, ... per `access_id`), taken in the same transaction as the change, never from a clock. Every
  published decision on one access has a higher version than the one before; a republish after a crash
  carries the same version (and the same event id).

**Rule for consumers.** For one access, the event with the highest `version` says the current state
(`active`, `past_due`, `cancelled`: the student keeps the courses; `suspended`, `expired`: they are
taken away), whatever the arrival order and however late it arrives. Payment events keep their role
where the subscription service has not decided anything yet (a first approval publishes no access
event), and a refund or chargeback stays terminal. Enrollment merges by `(version, effective_at, state,
reason)`, a total order, so its merge is commutative and idempotent.

**Compatibility.** `version` is an optional field added to `v1`: an event without it counts as version
0, and for such events consumers fall back to comparing `effective_at` (the old rule). Because the
schema forbids unknown fields, consumers are deployed before the producer that sends the new field.

**Clocks.** The subscription service decides time-based transitions (grace ended, paid-through date or
fixed term reached) with its own clock and keeps the clock of each access's last evaluation. A clock
lagging by at most `SUBSCRIPTION_MAX_CLOCK_SKEW_SECONDS` (120) never undoes a transition; an evaluation
stamped further ahead than that came from a pod whose clock runs fast: the next sweep re-evaluates it
and, if it was premature, publishes the correction with a higher version.

**Terms that arrive late.** A one-off sale of a product whose terms (`access_days`) are not known yet
(always the case for a sale parked for want of a mapping) is kept by the subscription service; when the
`catalogue` event brings the terms, the fixed-term access is created, and expired at once (with
`effective_at` the end of the term) if the term is already over.
"""

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
