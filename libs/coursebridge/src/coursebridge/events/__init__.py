"""Event envelope (CloudEvents 1.0) and the versioned contracts of every event type."""

from coursebridge.events.contracts import (
    CONTRACTS,
    EventContract,
    InvalidEvent,
    contract_for,
    register_contract,
    validate_event,
    validate_received,
)
from coursebridge.events.envelope import Event, WireMessage, new_event

__all__ = [
    "CONTRACTS",
    "Event",
    "EventContract",
    "InvalidEvent",
    "WireMessage",
    "contract_for",
    "new_event",
    "register_contract",
    "validate_event",
    "validate_received",
]

# Every contract lives in this library and is registered on import, so every process knows every type.
from coursebridge.events import access, catalogue, diagnostics, enrollments, learning, payments  # noqa: F401
