"""Wire enrollment's ports to adapters from configuration. The only place that knows both sides."""

from __future__ import annotations

from flask import Flask

from coursebridge.backends import open_bus, open_store
from coursebridge.outbox import OutboxRelay
from coursebridge.ports import DocumentStore, MessageBus
from coursebridge.runtime.app import create_app
from coursebridge.runtime.logging import configure_logging, register_secret
from coursebridge.runtime.worker import Worker
from coursebridge.topology import TOPOLOGY
from enrollment.config import EnrollmentSettings
from enrollment.entrypoints.api import admin_blueprint
from enrollment.service_layer.handlers import (
    payments_dispatcher,
    periodic,
    reconcile_stale,
    redrive_loop,
    subscriptions_dispatcher,
)
from enrollment.service_layer.ports import LearningPlatform
from enrollment.service_layer.saga import Saga

SERVICE = "enrollment"
PAYMENTS_SUBSCRIPTION = TOPOLOGY.subscription("enrollment.payments").name
SUBSCRIPTIONS_SUBSCRIPTION = TOPOLOGY.subscription("enrollment.subscriptions").name


def build_api(settings: EnrollmentSettings | None = None, *, store: DocumentStore | None = None) -> Flask:
    settings = settings or EnrollmentSettings.from_env()
    configure_logging(SERVICE, settings.platform.log_level)
    register_secret(settings.admin_token, settings.talentlms_api_key)
    store = store or open_store(settings.platform, SERVICE)
    return create_app(
        SERVICE,
        blueprints=[admin_blueprint(store, settings.admin_token)],
        readiness={"store": store.check},
        max_content_length=256 * 1024,
        gcp_project=settings.platform.gcp_project if settings.platform.backend == "gcp" else None,
    )


def build_lms(settings: EnrollmentSettings) -> LearningPlatform:
    if not settings.talentlms_base_url or not settings.talentlms_api_key:
        raise RuntimeError("TALENTLMS_BASE_URL and TALENTLMS_API_KEY must be set for the enrollment worker")
    from enrollment.adapters.rate_limit import RateLimiter
    from enrollment.adapters.talentlms import TalentLmsClient

    limiter = RateLimiter(settings.rate_limit_calls, settings.rate_limit_period)
    return TalentLmsClient(
        settings.talentlms_base_url, settings.talentlms_api_key, limiter=limiter, timeout=settings.lms_timeout
    )


def build_worker(
    settings: EnrollmentSettings | None = None,
    *,
    store: DocumentStore | None = None,
    bus: MessageBus | None = None,
    lms: LearningPlatform | None = None,
    provision: bool = False,
) -> Worker:
    """Subscribers of ``enrollment.payments`` and ``enrollment.subscriptions``, the outbox relay and the
    parked re-drive loop."""
    settings = settings or EnrollmentSettings.from_env()
    configure_logging(SERVICE + "-worker", settings.platform.log_level)
    register_secret(settings.admin_token, settings.talentlms_api_key)
    store = store or open_store(settings.platform, SERVICE)
    bus = bus or open_bus(settings.platform)
    if provision:
        bus.provision(TOPOLOGY)
    saga = Saga(store, lms or build_lms(settings))
    relay = OutboxRelay(store, bus, service=SERVICE)
    return Worker(
        service=SERVICE,
        bus=bus,
        subscriptions={
            PAYMENTS_SUBSCRIPTION: payments_dispatcher(saga),
            SUBSCRIPTIONS_SUBSCRIPTION: subscriptions_dispatcher(saga),
        },
        loops={
            "outbox-relay": lambda stop: relay.run(stop, poll_interval=settings.relay_poll_interval),
            "parked-redrive": redrive_loop(saga, settings.redrive_interval),
            "reconcile": periodic(
                "reconcile", settings.reconcile_interval, lambda: reconcile_stale(saga, settings.stale_after)
            ),
        },
        readiness={"store": store.check, "bus": bus.check},
        max_in_flight=settings.max_in_flight,
    )
