"""Wire the subscription service's ports to adapters from configuration."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from flask import Flask

from coursebridge import lookup
from coursebridge.backends import open_bus, open_store
from coursebridge.deadletters import deadletter_blueprint, keepers
from coursebridge.events.envelope import utc_now
from coursebridge.outbox import OutboxRelay
from coursebridge.ports import DocumentStore, MessageBus
from coursebridge.runtime.app import create_app
from coursebridge.runtime.logging import configure_logging, register_secret
from coursebridge.runtime.worker import Worker
from coursebridge.topology import TOPOLOGY
from subscription.config import SubscriptionSettings
from subscription.domain.access import DEFAULT_MAX_SKEW
from subscription.entrypoints.api import subscription_blueprint
from subscription.entrypoints.handlers import CATALOGUE_SUBSCRIPTION, PAYMENTS_SUBSCRIPTION, dispatchers
from subscription.service_layer.accesses import OUTBOX, sweep

SERVICE = "subscription"
Clock = Callable[[], datetime]
log = structlog.get_logger(__name__)


def build_api(
    settings: SubscriptionSettings | None = None,
    *,
    store: DocumentStore | None = None,
    clock: Clock = utc_now,
) -> Flask:
    settings = settings or SubscriptionSettings.from_env()
    configure_logging(SERVICE, settings.platform.log_level)
    register_secret(settings.admin_token)
    lookup.configure_from_env()
    store = store or open_store(settings.platform, SERVICE)
    payments, catalogue = dispatchers(store, settings.default_grace_days, clock)
    handlers = {PAYMENTS_SUBSCRIPTION: payments, CATALOGUE_SUBSCRIPTION: catalogue}
    return create_app(
        SERVICE,
        blueprints=[
            subscription_blueprint(store, settings.admin_token, clock, settings.max_clock_skew),
            deadletter_blueprint(store, settings.admin_token, handlers),
        ],
        readiness={"store": store.check},
        gcp_project=settings.platform.gcp_project if settings.platform.backend == "gcp" else None,
    )


def sweep_loop(
    store: DocumentStore, interval: float, clock: Clock = utc_now, max_skew: timedelta = DEFAULT_MAX_SKEW
) -> Callable[[threading.Event], None]:
    def loop(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                sweep(store, clock(), max_skew=max_skew)
            except Exception as error:  # a store hiccup must not kill the worker: next round catches up
                log.warning("sweep.failed", error=f"{type(error).__name__}: {error}"[:300])
            stop.wait(interval)

    return loop


def build_worker(
    settings: SubscriptionSettings | None = None,
    *,
    store: DocumentStore | None = None,
    bus: MessageBus | None = None,
    clock: Clock = utc_now,
    provision: bool = False,
) -> Worker:
    settings = settings or SubscriptionSettings.from_env()
    configure_logging(SERVICE + "-worker", settings.platform.log_level)
    lookup.configure_from_env()
    store = store or open_store(settings.platform, SERVICE)
    bus = bus or open_bus(settings.platform)
    if provision:
        bus.provision(TOPOLOGY)
    relay = OutboxRelay(store, bus, kind=OUTBOX, service=SERVICE, batch_size=settings.relay_batch_size)

    def relay_loop(stop: threading.Event) -> None:
        try:
            relay.run(stop, poll_interval=settings.relay_poll_interval)
        finally:
            relay.close()

    loops = {"outbox-relay": relay_loop}
    if settings.sweep_interval_seconds:
        loops["sweep"] = sweep_loop(store, settings.sweep_interval_seconds, clock, settings.max_clock_skew)
    payments, catalogue = dispatchers(store, settings.default_grace_days, clock, settings.max_clock_skew)
    return Worker(
        service=SERVICE,
        bus=bus,
        subscriptions={
            PAYMENTS_SUBSCRIPTION: payments,
            CATALOGUE_SUBSCRIPTION: catalogue,
            # dead letters move into the service's own ``deadletters`` kind (coursebridge.deadletters)
            **keepers(store, (PAYMENTS_SUBSCRIPTION, CATALOGUE_SUBSCRIPTION)),
        },
        loops=loops,
        readiness={"store": store.check, "bus": bus.check},
    )
