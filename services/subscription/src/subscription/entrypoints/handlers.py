"""Bus handlers: payment events and catalogue events in, access changes staged in the outbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from coursebridge.events import Event
from coursebridge.events.catalogue import PRODUCT_MAPPED, PRODUCT_UNMAPPED
from coursebridge.events.payments import PAYMENT_EVENT_TYPES
from coursebridge.ports import Delivery, DocumentStore
from coursebridge.runtime.consumer import EventDispatcher
from subscription.domain.access import DEFAULT_MAX_SKEW
from subscription.service_layer.accesses import handle_catalogue, handle_payment

PAYMENTS_SUBSCRIPTION = "subscription.payments"
CATALOGUE_SUBSCRIPTION = "subscription.catalogue"


def dispatchers(
    store: DocumentStore,
    default_grace_days: int,
    clock: Callable[[], datetime],
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> tuple[EventDispatcher, EventDispatcher]:
    def on_payment(event: Event, _delivery: Delivery) -> None:
        handle_payment(
            store, event.data, now=clock(), default_grace_days=default_grace_days, max_skew=max_skew
        )

    def on_catalogue(event: Event, _delivery: Delivery) -> None:
        handle_catalogue(
            store, event.data, now=clock(), default_grace_days=default_grace_days, max_skew=max_skew
        )

    payments = EventDispatcher("subscription", {event_type: on_payment for event_type in PAYMENT_EVENT_TYPES})
    catalogue = EventDispatcher(
        "subscription", {PRODUCT_MAPPED: on_catalogue, PRODUCT_UNMAPPED: on_catalogue}
    )
    return payments, catalogue
