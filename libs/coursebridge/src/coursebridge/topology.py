"""Topics and subscriptions: the one list the code, the local stack and the GCP manifests agree on.

Each consumer owns its subscriptions (``<service>.<topic>``). Every subscription has a dead-letter topic
so a poison message stops blocking its ordering key after ``max_delivery_attempts`` tries and waits for
an operator instead of being lost.
"""

from __future__ import annotations

from dataclasses import dataclass

PAYMENTS = "payments"
ENROLLMENTS = "enrollments"
SUBSCRIPTIONS = "subscriptions"
CATALOGUE = "catalogue"
LEARNING = "learning"

DEAD_LETTER_SUFFIX = ".dead-letter"
HOLD_SUFFIX = ".hold"


@dataclass(frozen=True)
class Subscription:
    name: str
    topic: str
    ordered: bool = True
    ack_deadline_seconds: int = 60
    max_delivery_attempts: int = 10
    min_backoff_seconds: float = 10.0
    max_backoff_seconds: float = 600.0

    @property
    def dead_letter_topic(self) -> str:
        return self.name + DEAD_LETTER_SUFFIX

    @property
    def hold_subscription(self) -> str:
        """Retains the dead-letter topic's messages for an operator to inspect and replay."""
        return self.dead_letter_topic + HOLD_SUFFIX


@dataclass(frozen=True)
class Topology:
    topics: tuple[str, ...]
    subscriptions: tuple[Subscription, ...]

    def subscription(self, name: str) -> Subscription:
        for subscription in self.subscriptions:
            if subscription.name == name:
                return subscription
        raise KeyError(f"unknown subscription {name!r}")

    def all_topics(self) -> tuple[str, ...]:
        """Event topics plus one dead-letter topic per subscription."""
        return self.topics + tuple(s.dead_letter_topic for s in self.subscriptions)


def _subscription(service: str, topic: str, *, ordered: bool = True) -> Subscription:
    return Subscription(name=f"{service}.{topic}", topic=topic, ordered=ordered)


TOPOLOGY = Topology(
    topics=(PAYMENTS, ENROLLMENTS, SUBSCRIPTIONS, CATALOGUE, LEARNING),
    subscriptions=(
        # Enrollment merges every event into its access source in any order (event time, per-access
        # version) and acts later from its own queue: it needs no ordered delivery, and unordered delivery
        # lets a consumer that died leave nothing stuck behind a key (any replica takes any message).
        _subscription("enrollment", PAYMENTS, ordered=False),
        _subscription("enrollment", SUBSCRIPTIONS, ordered=False),
        _subscription("subscription", PAYMENTS),
        _subscription("subscription", CATALOGUE),
        _subscription("analytics", PAYMENTS),
        _subscription("analytics", ENROLLMENTS),
        _subscription("analytics", SUBSCRIPTIONS),
        _subscription("analytics", CATALOGUE),
        # Learning activity is appended and deduplicated by its id in the views: order does not matter.
        _subscription("analytics", LEARNING, ordered=False),
    ),
)
