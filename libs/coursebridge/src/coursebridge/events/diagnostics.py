"""The diagnostic ping: proves a topic delivers end to end without touching any business state."""

from coursebridge.events.contracts import EventContract, register_contract
from coursebridge.topology import PAYMENTS

DIAGNOSTIC_PING = register_contract(
    EventContract(
        type="coursebridge.diagnostic.ping.v1",
        topic=PAYMENTS,
        schema_name="diagnostic_ping.v1",
        producer="diagnostics",
        description="Operator or test ping; every consumer acknowledges and ignores it.",
        ordering_key="none",
        example={"n": 1, "note": "is the payments topic delivering?"},
    )
)
