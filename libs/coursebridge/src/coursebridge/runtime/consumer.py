"""Turn a map of event types to handlers into one bus handler with metrics, logs and correlation.

What a consumer does with a type it has no handler for depends on what the type is (see
docs/architecture.md, "Rolling out a new event version"):

* **another version of a type it handles** (``...approved.v2`` reaching a consumer of ``.v1``): a newer
  producer is live before this consumer was upgraded. The event is *not* acknowledged: the handler raises
  ``UnknownEventVersion``, the bus retries it with backoff for the subscription's ``max_delivery_attempts``
  (tens of minutes: the length of a rolling upgrade) and then parks it on the dead-letter hold with the
  reason, where ``replay`` hands it to the upgraded consumer. On an ordered subscription its key waits
  meanwhile, so nothing after it is applied out of order. Counted as ``held``.
* **a type of the catalogue this consumer does not handle**: not for it; acknowledged (debug log).
* **a type it does not know at all** (a new type from a newer library): acknowledged, logged as a
  warning with its id and counted as ``recorded``, never silently dropped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

import structlog

from coursebridge.events import CONTRACTS, Event
from coursebridge.ports import Delivery, PermanentFailure
from coursebridge.runtime.logging import bind_correlation, clear_correlation
from coursebridge.runtime.metrics import (
    EVENT_HANDLING_SECONDS,
    EVENTS_CONSUMED,
    EVENTS_FAILED,
    EVENTS_UNKNOWN,
)

log = structlog.get_logger(__name__)

TypedHandler = Callable[[Event, Delivery], None]

_VERSIONED = re.compile(r"^(?P<family>.+)\.v(?P<version>\d+)$")


class UnknownEventVersion(Exception):
    """A version of a handled type this consumer cannot handle yet: retried, then parked, never acked."""


def type_family(event_type: str) -> str:
    """``coursebridge.payment.approved.v2`` -> ``coursebridge.payment.approved``."""
    match = _VERSIONED.match(event_type)
    return match.group("family") if match else event_type


class EventDispatcher:
    def __init__(self, service: str, handlers: Mapping[str, TypedHandler]) -> None:
        self.service = service
        self.handlers = dict(handlers)
        self._families = {type_family(event_type) for event_type in self.handlers}

    def __call__(self, event: Event, delivery: Delivery) -> None:
        handler = self.handlers.get(event.type)
        bind_correlation(event.correlation_id)
        started = time.perf_counter()
        try:
            if handler is None:
                self._unhandled(event, delivery)
            else:
                handler(event, delivery)
        except UnknownEventVersion:
            raise
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

    def _unhandled(self, event: Event, delivery: Delivery) -> None:
        if type_family(event.type) in self._families:
            EVENTS_UNKNOWN.labels(self.service, delivery.subscription, event.type, "held").inc()
            log.warning(
                "event.unknown_version",
                event_type=event.type,
                event_id=event.id,
                subscription=delivery.subscription,
                attempt=delivery.attempt,
                handled=sorted(t for t in self.handlers if type_family(t) == type_family(event.type)),
            )
            raise UnknownEventVersion(
                f"{event.type} is a version this consumer cannot handle yet (upgrade it, then replay)"
            )
        if event.type in CONTRACTS:
            log.debug("event.ignored", event_type=event.type, event_id=event.id)
            return
        EVENTS_UNKNOWN.labels(self.service, delivery.subscription, event.type, "recorded").inc()
        log.warning(
            "event.unknown_type",
            event_type=event.type,
            event_id=event.id,
            source=event.source,
            subscription=delivery.subscription,
        )
