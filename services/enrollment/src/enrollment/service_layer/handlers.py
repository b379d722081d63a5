"""Bus handlers: a received event becomes a signal, the signal is merged and the student queued.

The handler returns (and the message is acked) as soon as that decision is stored; TalentLMS work happens
in the dispatcher. A held or redelivered message therefore never waits on TalentLMS, and a TalentLMS outage,
429 storm or quota exhaustion never burns a message's delivery attempts.
"""

from __future__ import annotations

import structlog

from coursebridge.events import Event
from coursebridge.events.access import ACCESS_EXPIRED, ACCESS_RESTORED, ACCESS_SUSPENDED, PLAN_CHANGED
from coursebridge.events.payments import payment_event_type
from coursebridge.ports import Delivery, PermanentFailure
from coursebridge.runtime.consumer import EventDispatcher, TypedHandler
from enrollment.domain.access import GRANTING_KINDS, REVOKING_KINDS
from enrollment.domain.signals import NotActionable, access_signal, payment_signal
from enrollment.service_layer.intake import Intake

log = structlog.get_logger(__name__)

PAYMENT_TYPES = tuple(payment_event_type(kind) for kind in sorted(GRANTING_KINDS | set(REVOKING_KINDS)))
ACCESS_TYPES = (ACCESS_SUSPENDED, ACCESS_RESTORED, ACCESS_EXPIRED, PLAN_CHANGED)


def payment_handler(intake: Intake) -> TypedHandler:
    def handle(event: Event, delivery: Delivery) -> None:
        try:
            signal = payment_signal(event.id, event.data)
        except NotActionable as error:
            raise PermanentFailure(str(error)) from error
        if signal is not None:
            result = intake.apply(signal)
            log.info(
                "enrollment.payment_received",
                event_type=event.type,
                event_id=event.id,
                duplicate=result.duplicate,
                queued=result.queued,
                attempt=delivery.attempt,
            )

    return handle


def access_handler(intake: Intake) -> TypedHandler:
    def handle(event: Event, delivery: Delivery) -> None:
        signal = access_signal(event.type, event.id, event.data)
        if signal is not None:
            result = intake.apply(signal)
            log.info(
                "enrollment.access_received",
                event_type=event.type,
                event_id=event.id,
                duplicate=result.duplicate,
                queued=result.queued,
                attempt=delivery.attempt,
            )

    return handle


def payments_dispatcher(intake: Intake) -> EventDispatcher:
    handler = payment_handler(intake)
    return EventDispatcher("enrollment", {event_type: handler for event_type in PAYMENT_TYPES})


def subscriptions_dispatcher(intake: Intake) -> EventDispatcher:
    handler = access_handler(intake)
    return EventDispatcher("enrollment", {event_type: handler for event_type in ACCESS_TYPES})
