"""Turn a map of event types to handlers into one bus handler with metrics, logs and correlation.

Consumers ignore event types they do not know (new producers may publish ahead of them) and acknowledge
them: an unknown type is not an error, it is the future arriving early.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import structlog

from coursebridge.events import Event
from coursebridge.ports import Delivery, PermanentFailure
from coursebridge.runtime.logging import bind_correlation, clear_correlation
from coursebridge.runtime.metrics import EVENT_HANDLING_SECONDS, EVENTS_CONSUMED, EVENTS_FAILED

log = structlog.get_logger(__name__)

TypedHandler = Callable[[Event, Delivery], None]


class EventDispatcher:
    def __init__(self, service: str, handlers: Mapping[str, TypedHandler]) -> None:
        self.service = service
        self.handlers = dict(handlers)

    def __call__(self, event: Event, delivery: Delivery) -> None:
        handler = self.handlers.get(event.type)
        bind_correlation(event.correlation_id)
        started = time.perf_counter()
        try:
            if handler is None:
                log.debug("event.ignored", event_type=event.type, event_id=event.id)
            else:
                handler(event, delivery)
        except PermanentFailure:
            EVENTS_FAILED.labels(self.service, delivery.subscription, event.type, "dead_lettered").inc()
            raise
        except Exception:
            EVENTS_FAILED.labels(self.service, delivery.subscription, event.type, "retried").inc()
            raise
        else:
            EVENTS_CONSUMED.labels(self.service, delivery.subscription, event.type).inc()
        finally:
            EVENT_HANDLING_SECONDS.labels(self.service, delivery.subscription).observe(
                time.perf_counter() - started
            )
            clear_correlation()
