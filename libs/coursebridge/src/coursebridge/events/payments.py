"""Payment events: one contract per normalised Hotmart event kind, all on the ``payments`` topic.

The ingest service turns each Hotmart webhook into one ``coursebridge.payment.<kind>.v1`` event whose
data follows the shared schema ``payment_event.v1`` (see ``schemas/payment_event.v1.json``). Importing
this module registers the contracts (idempotently), so producers and consumers only need::

    from coursebridge.events.payments import payment_event_type
"""

from __future__ import annotations

from coursebridge.events.contracts import EventContract, register_contract
from coursebridge.topology import PAYMENTS

SCHEMA_NAME = "payment_event.v1"
PRODUCER = "ingest"
_TYPE_PREFIX = "coursebridge.payment."
_TYPE_SUFFIX = ".v1"

UNRECOGNISED = "unrecognised"
ORDERING_KEY = (
    "purchase transaction; `subscriber:<code>` for subscription-only events; else `event:<hotmart id>`"
)

# kind -> one-line description; the order is the order of Hotmart's event list.
_DESCRIPTIONS: dict[str, str] = {
    "purchase_approved": "A payment was approved: a first charge, or a renewal when recurrence_number > 1.",
    "purchase_complete": "An approved purchase left its refund (warranty) window.",
    "purchase_canceled": "A purchase was cancelled before completion (e.g. the card was refused).",
    "purchase_billet_printed": "A boleto (bank slip) was generated and is not paid yet.",
    "purchase_protest": "The buyer opened a dispute or a refund request.",
    "purchase_refunded": "A purchase was refunded.",
    "purchase_chargeback": "A purchase was charged back by the card issuer.",
    "purchase_expired": "An unpaid boleto or pix expired.",
    "purchase_delayed": "A recurring charge is overdue (subscription past due).",
    "purchase_out_of_shopping_cart": "A checkout was abandoned (analytics only).",
    "subscription_cancellation": "A subscription was cancelled; access runs until its next charge date.",
    "switch_plan": "A subscriber switched to another plan of the same product.",
    "update_subscription_charge_date": "A subscription's billing day changed.",
    "club_first_access": "A member opened the Hotmart members area for the first time (analytics only).",
    "club_module_completed": "A member completed a module in the Hotmart members area (analytics only).",
    "order_fulfillment": "A physical order was shipped (recorded, otherwise ignored).",
    UNRECOGNISED: "A Hotmart event whose name CourseBridge does not know yet (recorded, never acted on).",
}

PAYMENT_KINDS: tuple[str, ...] = tuple(_DESCRIPTIONS)
"""Every kind of payment event, ``unrecognised`` last."""

PURCHASE_KINDS: frozenset[str] = frozenset(kind for kind in PAYMENT_KINDS if kind.startswith("purchase_"))
"""Kinds whose Hotmart body is a purchase (``data.purchase`` with a transaction, ``data.product``)."""

SUBSCRIPTION_ONLY_KINDS: frozenset[str] = frozenset(
    {"subscription_cancellation", "switch_plan", "update_subscription_charge_date"}
)
"""Kinds that concern a subscription without a purchase: identified by the subscriber code."""


def payment_event_type(kind: str) -> str:
    """The CloudEvent type of a kind, e.g. ``coursebridge.payment.purchase_approved.v1``."""
    if kind not in _DESCRIPTIONS:
        raise ValueError(f"unknown payment event kind {kind!r}")
    return f"{_TYPE_PREFIX}{kind}{_TYPE_SUFFIX}"


def payment_kind(event_type: str) -> str:
    """The kind of a payment event type (inverse of ``payment_event_type``); ``ValueError`` otherwise."""
    if event_type.startswith(_TYPE_PREFIX) and event_type.endswith(_TYPE_SUFFIX):
        kind = event_type[len(_TYPE_PREFIX) : -len(_TYPE_SUFFIX)]
        if kind in _DESCRIPTIONS:
            return kind
    raise ValueError(f"not a payment event type: {event_type!r}")


PAYMENT_EVENT_TYPES: tuple[str, ...] = tuple(payment_event_type(kind) for kind in PAYMENT_KINDS)
"""Every payment event type, in the order of ``PAYMENT_KINDS``."""


def register_payment_contracts() -> tuple[EventContract, ...]:
    """Register one contract per payment kind. Safe to call any number of times."""
    return tuple(
        register_contract(
            EventContract(
                type=payment_event_type(kind),
                topic=PAYMENTS,
                schema_name=SCHEMA_NAME,
                producer=PRODUCER,
                description=description,
                ordering_key=ORDERING_KEY,
            )
        )
        for kind, description in _DESCRIPTIONS.items()
    )


register_payment_contracts()

__all__ = [
    "PAYMENT_EVENT_TYPES",
    "PAYMENT_KINDS",
    "PURCHASE_KINDS",
    "SCHEMA_NAME",
    "SUBSCRIPTION_ONLY_KINDS",
    "UNRECOGNISED",
    "payment_event_type",
    "payment_kind",
    "register_payment_contracts",
]
