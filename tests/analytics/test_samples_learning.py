"""``make samples`` on a fresh stack shows learning data: the sample webhooks as ingest publishes them plus
the sample TalentLMS activity, projected by analytics, give one completed purchase, one started and then
refunded, one never started and charged back, and recent cohorts in the default 90-day range."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.service_layer import reports
from analytics.service_layer.projector import project_events
from ingest.domain.hotmart import normalise
from ingest.entrypoints.sample_learning import learning_events
from ingest.entrypoints.send_samples import load_samples, redate
from ingest.service_layer.intake import payment_event

TODAY = datetime.now(UTC).date()


def test_samples_fill_the_learning_views(tmp_path: Path):
    samples = redate(load_samples(), TODAY)
    payments = []
    for _name, body in samples:
        normalised = normalise(body, received_at=datetime.now(UTC))
        if normalised.kind.startswith("purchase_"):
            payments.append(payment_event(normalised))
    learning = learning_events(samples, datetime.now(UTC))
    warehouse = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    warehouse.migrate()
    project_events(warehouse, payments + learning + learning, b"samples-key")  # sent twice: counted once

    purchases = {r["transaction"]: r for r in warehouse.query_view("learning_purchases")}
    assert purchases["HP1000000001"]["progress"] == "completed"  # the subscription; its renewal is no buyer
    assert "HP1000000002" not in purchases
    assert purchases["HP2000000001"]["progress"] == "started"
    assert purchases["HP2000000001"]["refunded_at"] is not None
    assert purchases["HP2000000002"]["progress"] == "never_started"
    assert purchases["HP2000000002"]["charged_back_at"] is not None
    assert purchases["HP2000000005"]["progress"] == "started"

    scope = reports.Scope(TODAY - timedelta(days=89), TODAY)
    cohorts = reports.learning_cohorts(warehouse, scope)
    assert sum(r["buyers"] for r in cohorts["rows"]) >= 3
    assert cohorts["activity"]["events"] == len(learning)
    refunds = reports.refunds_by_progress(warehouse, scope)["rows"]
    assert any(r["bucket"] == "never_started" and r["refunded"] for r in refunds)
    assert date.fromisoformat(cohorts["activity"]["last_occurred_at"][:10]) < TODAY
