"""Bus handlers: received events become saga signals; parked approvals are re-driven once mapped."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from coursebridge.events import Event
from coursebridge.events.access import ACCESS_EXPIRED, ACCESS_RESTORED, ACCESS_SUSPENDED, PLAN_CHANGED
from coursebridge.events.envelope import format_time
from coursebridge.events.payments import payment_event_type
from coursebridge.ports import Delivery, Filter, PermanentFailure
from coursebridge.runtime.consumer import EventDispatcher, TypedHandler
from enrollment.domain.saga import GRANTING_KINDS, REVOKING_KINDS
from enrollment.domain.signals import NotActionable, access_signal, payment_signal
from enrollment.service_layer.saga import ENTITLEMENTS, PARKED, PRODUCTS, Saga, mapping_from_doc

log = structlog.get_logger(__name__)

PAYMENT_TYPES = tuple(payment_event_type(kind) for kind in sorted(GRANTING_KINDS | set(REVOKING_KINDS)))
ACCESS_TYPES = (ACCESS_SUSPENDED, ACCESS_RESTORED, ACCESS_EXPIRED, PLAN_CHANGED)


def payment_handler(saga: Saga) -> TypedHandler:
    def handle(event: Event, delivery: Delivery) -> None:
        try:
            signal = payment_signal(event.id, event.data)
        except NotActionable as error:
            raise PermanentFailure(str(error)) from error
        if signal is not None:
            outcome = saga.handle(signal)
            log.info(
                "saga.payment_handled",
                event_type=event.type,
                event_id=event.id,
                duplicate=outcome.duplicate,
                parked=outcome.parked,
                enrolled=len(outcome.enrolled),
                unenrolled=len(outcome.unenrolled),
                failed=len(outcome.failed),
                lms_calls=outcome.lms_calls,
                attempt=delivery.attempt,
            )

    return handle


def access_handler(saga: Saga) -> TypedHandler:
    def handle(event: Event, delivery: Delivery) -> None:
        signal = access_signal(event.type, event.id, event.data)
        if signal is not None:
            outcome = saga.handle(signal)
            log.info(
                "saga.access_handled",
                event_type=event.type,
                event_id=event.id,
                duplicate=outcome.duplicate,
                enrolled=len(outcome.enrolled),
                unenrolled=len(outcome.unenrolled),
                failed=len(outcome.failed),
                attempt=delivery.attempt,
            )

    return handle


def payments_dispatcher(saga: Saga) -> EventDispatcher:
    handler = payment_handler(saga)
    return EventDispatcher("enrollment", {event_type: handler for event_type in PAYMENT_TYPES})


def subscriptions_dispatcher(saga: Saga) -> EventDispatcher:
    handler = access_handler(saga)
    return EventDispatcher("enrollment", {event_type: handler for event_type in ACCESS_TYPES})


def redrive_parked(saga: Saga, limit: int = 200) -> int:
    """Apply parked approvals whose product is mapped now; returns how many were applied."""
    parked = saga.store.query(PARKED, limit=limit)
    mapped: dict[str, bool] = {}
    applied = 0
    for doc in parked:
        product_id = doc.data["product_id"]
        if product_id not in mapped:
            mapped[product_id] = mapping_from_doc(saga.store.get(PRODUCTS, product_id)) is not None
        if mapped[product_id]:
            saga.redrive(doc.data["access_id"])
            applied += 1
    if applied:
        log.info("saga.parked_redriven", count=applied)
    return applied


def reconcile_stale(saga: Saga, stale_after: float, limit: int = 200) -> int:
    """Re-drive entitlements whose LMS call has been outstanding longer than ``stale_after`` seconds.

    Normally the bus redelivers until the LMS call succeeds. This is the safety net for a message that
    was acknowledged, dead-lettered or lost without its LMS effect: the entitlement stays ``pending`` and
    this loop applies it. LMS calls are idempotent through the recorded state, so a re-drive that races a
    redelivery costs at most an "already enrolled" answer.
    """
    cutoff = format_time(datetime.now(UTC) - timedelta(seconds=stale_after))
    stale = [
        doc.data
        for doc in saga.store.query(ENTITLEMENTS, [Filter("status", "==", "pending")], limit=limit)
        if (doc.data.get("updated_at") or "") <= cutoff
    ]
    accesses = sorted({access for data in stale for access in (data.get("sources") or {})})
    for access_id in accesses:
        saga.redrive(access_id)
    if accesses:
        log.warning("saga.stale_entitlements_redriven", entitlements=len(stale), accesses=len(accesses))
    return len(stale)


def periodic(name: str, interval: float, work: Callable[[], object]) -> Callable[[threading.Event], None]:
    """A worker loop running ``work`` every ``interval`` seconds; a failed round is logged, not fatal."""

    def loop(stop: threading.Event) -> None:
        while not stop.wait(interval):
            try:
                work()
            except Exception as error:  # transient LMS or store trouble: next round tries again
                log.warning(f"saga.{name}_failed", error=f"{type(error).__name__}: {error}"[:300])

    return loop


def redrive_loop(saga: Saga, interval: float) -> Callable[[threading.Event], None]:
    return periodic("redrive", interval, lambda: redrive_parked(saga))
