"""Wire enrollment's ports to adapters from configuration. The only place that knows both sides."""

from __future__ import annotations

import os
import threading

from flask import Flask

from coursebridge.backends import open_bus, open_store
from coursebridge.deadletters import deadletter_blueprint, keepers
from coursebridge.outbox import Outbox, OutboxRelay
from coursebridge.ports import DocumentStore, EventHandler, MessageBus
from coursebridge.runtime.app import create_app
from coursebridge.runtime.logging import configure_logging, register_secret
from coursebridge.runtime.worker import Worker
from coursebridge.topology import TOPOLOGY
from enrollment.config import EnrollmentSettings
from enrollment.entrypoints.api import admin_blueprint
from enrollment.entrypoints.loops import RELAY_BATCH, dispatcher_loop, relay_loop
from enrollment.service_layer.audit import DriftAudit
from enrollment.service_layer.batch import BatchEnroller
from enrollment.service_layer.courses import CourseListCache
from enrollment.service_layer.dispatcher import Dispatcher, DispatcherSettings
from enrollment.service_layer.fanout import Fanout
from enrollment.service_layer.handlers import payments_dispatcher, subscriptions_dispatcher
from enrollment.service_layer.intake import Intake
from enrollment.service_layer.learning import LearningPoller
from enrollment.service_layer.ports import LearningPlatform
from enrollment.service_layer.reconcile import Announcer, Reconciler

SERVICE = "enrollment"
PAYMENTS_SUBSCRIPTION = TOPOLOGY.subscription("enrollment.payments").name
SUBSCRIPTIONS_SUBSCRIPTION = TOPOLOGY.subscription("enrollment.subscriptions").name


class TalentLmsNotConfigured(RuntimeError):
    """The worker needs both TALENTLMS_BASE_URL and TALENTLMS_API_KEY."""


def build_lms(settings: EnrollmentSettings) -> LearningPlatform:
    missing = [
        name
        for name, value in (
            ("TALENTLMS_BASE_URL", settings.talentlms_base_url),
            ("TALENTLMS_API_KEY", settings.talentlms_api_key),
        )
        if not value
    ]
    if missing:
        raise TalentLmsNotConfigured(
            f"the enrollment worker needs {' and '.join(missing)} (e.g. TALENTLMS_BASE_URL="
            "https://acme.talentlms.com/api/v1 and the portal's API key)"
        )
    from enrollment.adapters.talentlms_platform import DEFAULT_API_VERSION, TalentLmsConfig, build_talentlms

    return build_talentlms(
        TalentLmsConfig(
            base_url=settings.talentlms_base_url or "",
            api_key=settings.talentlms_api_key or "",
            v2_base_url=os.environ.get("TALENTLMS_V2_BASE_URL") or None,
            api_version=os.environ.get("TALENTLMS_API_VERSION") or DEFAULT_API_VERSION,
            hourly_quota=settings.hourly_quota,
            quota_window_seconds=settings.quota_window,
            timeout=settings.lms_timeout,
            rate_limit_calls=settings.rate_limit_calls,
            rate_limit_window_seconds=settings.rate_limit_period,
        )
    )


def replay_handlers(store: DocumentStore) -> dict[str, EventHandler]:
    """The worker's own bus handlers, for an operator's replay of a dead letter (they only decide and
    queue; the worker's dispatcher then serves the queue)."""
    intake = Intake(store)
    return {
        PAYMENTS_SUBSCRIPTION: payments_dispatcher(intake),
        SUBSCRIPTIONS_SUBSCRIPTION: subscriptions_dispatcher(intake),
    }


def build_api(
    settings: EnrollmentSettings | None = None,
    *,
    store: DocumentStore | None = None,
    lms: LearningPlatform | None = None,
) -> Flask:
    """The admin and student API. It never calls TalentLMS to act; with credentials it fetches the
    one-click course links of the student view (on demand, never stored)."""
    settings = settings or EnrollmentSettings.from_env()
    configure_logging(SERVICE, settings.platform.log_level)
    register_secret(settings.admin_token, settings.talentlms_api_key)
    store = store or open_store(settings.platform, SERVICE)
    if lms is None and settings.talentlms_base_url and settings.talentlms_api_key:
        lms = build_lms(settings)
    return create_app(
        SERVICE,
        blueprints=[
            admin_blueprint(store, settings.admin_token, lms=lms),
            deadletter_blueprint(store, settings.admin_token, replay_handlers(store)),
        ],
        readiness={"store": store.check},
        max_content_length=256 * 1024,
        gcp_project=settings.platform.gcp_project if settings.platform.backend == "gcp" else None,
    )


def build_dispatcher(store: DocumentStore, lms: LearningPlatform, settings: EnrollmentSettings) -> Dispatcher:
    outbox = Outbox(store)
    return Dispatcher(
        store,
        lms,
        Reconciler(store, lms, outbox=outbox),
        settings=DispatcherSettings(
            calls_per_window=settings.rate_limit_calls,
            window_seconds=settings.rate_limit_period,
            quota_window_seconds=settings.quota_window,
            batch_threshold=settings.batch_threshold,
        ),
        batcher=BatchEnroller(store, lms, Announcer(outbox)) if settings.batch_threshold > 0 else None,
        fanout=Fanout(store),
        courses=CourseListCache(store, lms, interval=settings.course_list_interval),
        audit=DriftAudit(
            store, lms, interval=settings.audit_interval, quota_share=settings.audit_quota_share
        ),
        learning=build_learning(store, lms, outbox, settings),
    )


def build_learning(
    store: DocumentStore, lms: LearningPlatform, outbox: Outbox, settings: EnrollmentSettings
) -> LearningPoller | None:
    """The timeline poller (learning events), on when ``ENROLLMENT_LEARNING_INTERVAL_SECONDS`` > 0. It
    runs in the dispatcher's housekeeping, so it shares its lease and its call budget; the worker cannot
    start without TalentLMS credentials, so without them there is no learning poll either."""
    if settings.learning_interval <= 0 or settings.learning_quota_share <= 0:
        return None
    return LearningPoller(
        store,
        lms,
        outbox,
        interval=settings.learning_interval,
        quota_share=settings.learning_quota_share,
        hourly_quota=settings.hourly_quota,
        quota_window_seconds=settings.quota_window,
    )


def build_worker(
    settings: EnrollmentSettings | None = None,
    *,
    store: DocumentStore | None = None,
    bus: MessageBus | None = None,
    lms: LearningPlatform | None = None,
    provision: bool = False,
) -> Worker:
    """Subscribers of ``enrollment.payments`` and ``enrollment.subscriptions`` (they only decide and queue),
    and two singleton loops, each under its own lease: the dispatcher and the outbox relay."""
    settings = settings or EnrollmentSettings.from_env()
    configure_logging(SERVICE + "-worker", settings.platform.log_level)
    register_secret(settings.admin_token, settings.talentlms_api_key)
    store = store or open_store(settings.platform, SERVICE)
    bus = bus or open_bus(settings.platform)
    if provision:
        bus.provision(TOPOLOGY)
    lms = lms or build_lms(settings)
    dispatcher = build_dispatcher(store, lms, settings)
    wake = threading.Event()
    intake = Intake(store, on_queued=wake.set)
    relay = OutboxRelay(store, bus, service=SERVICE, batch_size=RELAY_BATCH)
    ttl = settings.lease_seconds
    return Worker(
        service=SERVICE,
        bus=bus,
        subscriptions={
            PAYMENTS_SUBSCRIPTION: payments_dispatcher(intake),
            SUBSCRIPTIONS_SUBSCRIPTION: subscriptions_dispatcher(intake),
            # dead letters move into enrollment's own ``deadletters`` kind (coursebridge.deadletters)
            **keepers(store, (PAYMENTS_SUBSCRIPTION, SUBSCRIPTIONS_SUBSCRIPTION)),
        },
        loops={
            "lms-dispatcher": dispatcher_loop(store, dispatcher, wake, ttl),
            "outbox-relay": relay_loop(store, relay, settings.relay_poll_interval, ttl),
        },
        readiness={"store": store.check, "bus": bus.check},
        max_in_flight=settings.max_in_flight,
    )
