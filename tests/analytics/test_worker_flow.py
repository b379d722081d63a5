"""The analytics worker on both bus backends: events in on the topics it reads, warehouse rows out, once."""

from __future__ import annotations

import time
from pathlib import Path

from waiting import wait_for

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.bootstrap import build_worker
from analytics.config import AnalyticsSettings
from analytics.synthetic import generate_events, learning_events_for
from coursebridge.config import PlatformSettings
from coursebridge.topology import TOPOLOGY

KEY = b"flow-test-key"


def test_events_in_rows_out_with_redeliveries(bus_backend, tmp_path: Path):
    publisher = bus_backend.make()
    publisher.provision(TOPOLOGY)
    warehouse = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    settings = AnalyticsSettings(
        platform=PlatformSettings(data_dir=tmp_path, service_name="analytics"),
        pseudonym_key=KEY,
        batch_size=50,
        batch_wait_seconds=0.02,
    )
    worker, projector = build_worker(settings, bus=bus_backend.make(), warehouse=warehouse)
    events = list(generate_events(60, seed=21))
    learning = learning_events_for(events, seed=22)[:15]
    events += learning
    topics = {
        "payment": "payments",
        "enrollment": "enrollments",
        "subscription": "subscriptions",
        "learning": "learning",
    }
    worker.start()
    try:
        for event in events + events[:10]:  # the last ten are published twice, as a relay crash would
            topic = topics[event.type.split(".")[1]]
            publisher.publish(topic, event, ordering_key=event.correlation_id)
        wait_for(
            lambda: warehouse.path.exists() and warehouse.count("events") == len(events),
            "the warehouse to hold every event",
        )
        time.sleep(0.5)  # give any duplicate a chance to (wrongly) land
        assert warehouse.count("events") == len(events)
        payments = sum(1 for e in events if e.type.startswith("coursebridge.payment."))
        assert warehouse.count("payments") == payments
        assert warehouse.count("learning") == len(learning) > 5
        others = len(events) - payments - len(learning)
        assert warehouse.count("enrollments") + warehouse.count("subscriptions") == others
    finally:
        worker.stop(10)
        projector.stop()
