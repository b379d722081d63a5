"""Wire analytics' ports to adapters from configuration. The only place that knows both sides."""

from __future__ import annotations

from flask import Flask

from analytics.config import AnalyticsSettings
from analytics.ports import Warehouse
from analytics.service_layer.projector import BatchingProjector
from coursebridge.backends import open_bus
from coursebridge.events import CONTRACTS
from coursebridge.runtime.app import create_app
from coursebridge.runtime.consumer import EventDispatcher
from coursebridge.runtime.logging import configure_logging, register_secret
from coursebridge.runtime.worker import Worker
from coursebridge.topology import TOPOLOGY

SERVICE = "analytics"
SUBSCRIPTIONS = (
    "analytics.payments",
    "analytics.enrollments",
    "analytics.subscriptions",
    "analytics.catalogue",
    "analytics.learning",
)


def open_warehouse(settings: AnalyticsSettings) -> Warehouse:
    if settings.platform.backend == "gcp":
        from analytics.adapters.bigquery_warehouse import BigQueryWarehouse

        return BigQueryWarehouse(
            settings.platform.gcp_project, settings.bigquery_dataset, location=settings.bigquery_location
        )
    from analytics.adapters.duckdb_warehouse import FILE_NAME, DuckDBWarehouse

    return DuckDBWarehouse(settings.platform.data_dir / FILE_NAME)


def build_api(settings: AnalyticsSettings | None = None, warehouse: Warehouse | None = None) -> Flask:
    from analytics.entrypoints.api import analytics_blueprint

    settings = settings or AnalyticsSettings.from_env()
    configure_logging(SERVICE, settings.platform.log_level)
    register_secret(settings.admin_token, settings.pseudonym_key.decode("utf-8", "replace"))
    warehouse = warehouse or open_warehouse(settings)
    return create_app(
        SERVICE,
        blueprints=[analytics_blueprint(warehouse, settings.admin_token)],
        readiness={"warehouse": warehouse.check},
        gcp_project=settings.platform.gcp_project if settings.platform.backend == "gcp" else None,
    )


def build_worker(
    settings: AnalyticsSettings | None = None,
    *,
    provision: bool = False,
    bus=None,
    warehouse: Warehouse | None = None,
) -> tuple[Worker, BatchingProjector]:
    settings = settings or AnalyticsSettings.from_env()
    configure_logging(SERVICE + "-worker", settings.platform.log_level)
    register_secret(settings.pseudonym_key.decode("utf-8", "replace"))
    bus = bus or open_bus(settings.platform)
    if provision:
        bus.provision(TOPOLOGY)
    warehouse = warehouse or open_warehouse(settings)
    warehouse.migrate()
    projector = BatchingProjector(
        warehouse, settings.pseudonym_key, max_batch=settings.batch_size, max_wait=settings.batch_wait_seconds
    )
    projector.start()
    # Every registered type except diagnostics goes to the raw log; unknown (newer) types are acked.
    handlers = {t: projector.handle for t in CONTRACTS if not t.startswith("coursebridge.diagnostic.")}
    dispatcher = EventDispatcher(SERVICE, handlers)
    worker = Worker(
        service=SERVICE,
        bus=bus,
        subscriptions={name: dispatcher for name in SUBSCRIPTIONS},
        readiness={"warehouse": warehouse.check, "bus": bus.check, "writer": projector.alive},
        max_in_flight=settings.max_in_flight,
    )
    return worker, projector
