"""Wire ingest's ports to adapters from configuration. The only place that knows both sides."""

from __future__ import annotations

from flask import Flask
from prometheus_client import REGISTRY

from coursebridge import lookup
from coursebridge.backends import open_bus, open_store
from coursebridge.lease import Lease, singleton
from coursebridge.runtime.app import create_app
from coursebridge.runtime.logging import configure_logging, register_secret
from coursebridge.runtime.worker import Worker
from coursebridge.topology import TOPOLOGY
from ingest.config import MAX_BODY_BYTES, IngestSettings
from ingest.entrypoints.api import count_too_large, restore_last_received, webhook_blueprint
from ingest.service_layer.relay import webhook_relay

SERVICE = "ingest"


def build_api(settings: IngestSettings | None = None) -> Flask:
    settings = settings or IngestSettings.from_env()
    configure_logging(SERVICE, settings.platform.log_level)
    register_secret(*settings.hottoks, settings.admin_token, *_api_secrets(settings))
    lookup.configure_from_env()  # webhooks carry the keyed hash of the buyer's e-mail
    store = open_store(settings.platform, SERVICE)
    app = create_app(
        SERVICE,
        blueprints=[
            webhook_blueprint(
                store,
                settings.hottoks,
                settings.admin_token,
                accept_test_events=settings.accept_test_events,
            )
        ],
        readiness={"store": store.check},
        max_content_length=MAX_BODY_BYTES,
        notes={"hotmart_api": settings.hotmart_api_status},
        gcp_project=settings.platform.gcp_project if settings.platform.backend == "gcp" else None,
    )
    count_too_large(app)
    restore_last_received(store)
    return app


def build_relay_worker(settings: IngestSettings | None = None, *, provision: bool = False) -> Worker:
    settings = settings or IngestSettings.from_env()
    configure_logging(SERVICE + "-relay", settings.platform.log_level)
    store = open_store(settings.platform, SERVICE)
    bus = open_bus(settings.platform)
    if provision:
        bus.provision(TOPOLOGY)
    relay = webhook_relay(store, bus, batch_size=settings.relay_batch_size)
    loops = {"outbox-relay": lambda stop: relay.run(stop, poll_interval=settings.relay_poll_interval)}
    _register_totals(store)
    if settings.reconcile_loop and settings.hotmart_api is not None:
        from ingest.adapters.hotmart_api import HotmartApi
        from ingest.entrypoints.reconcile import reconcile_work_round

        register_secret(*_api_secrets(settings))
        api = HotmartApi(settings.hotmart_api)
        lease = Lease(store, "hotmart-reconciliation", ttl=900.0)  # a round may take minutes
        loops["hotmart-reconciliation"] = singleton(
            lease, reconcile_work_round(store, api, settings), idle=5.0
        )
    return Worker(
        service=SERVICE,
        bus=bus,
        loops=loops,
        readiness={"store": store.check, "bus": bus.check},
    )


def _api_secrets(settings: IngestSettings) -> tuple[str, ...]:
    api = settings.hotmart_api
    return () if api is None else (api.client_secret, api.basic)


_totals_registered = False


def _register_totals(store) -> None:
    """The reconciliation totals collector, once per process (tests build several workers)."""
    global _totals_registered
    if not _totals_registered:
        from ingest.entrypoints.reconcile import RecoveredTotals

        REGISTRY.register(RecoveredTotals(store))
        _totals_registered = True
