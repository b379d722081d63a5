"""Reconciliation's entry points: off without credentials, durable totals for the metrics, the loop round."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from coursebridge.backends import open_store
from coursebridge.config import PlatformSettings
from ingest.entrypoints.reconcile import RecoveredTotals, main, reconcile_work_round
from ingest.service_layer.recovery import RUNS, TOTALS_DOC, RecoveryReport, record_run


def test_without_credentials_the_command_says_off_and_exits_2(monkeypatch, capsys, tmp_path: Path):
    monkeypatch.delenv("HOTMART_CLIENT_ID", raising=False)
    monkeypatch.delenv("HOTMART_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("COURSEBRIDGE_DATA_DIR", str(tmp_path))
    assert main([]) == 2
    assert json.loads(capsys.readouterr().out)["status"] == "off"


def test_recovered_totals_survive_the_process_and_become_a_counter(tmp_path: Path):
    store = open_store(
        PlatformSettings(backend="embedded", data_dir=tmp_path, service_name="ingest"), "ingest"
    )
    for started in ("2025-01-01T00:00:00.000Z", "2025-01-01T00:15:00.000Z"):
        report = RecoveryReport("reconciliation", started)
        report.recovered.update({"purchase_approved": 2, "purchase_refunded": 1})
        record_run(store, report)
    families = {family.name: family for family in RecoveredTotals(store).collect()}
    samples = {s.labels["kind"]: s.value for s in families["coursebridge_reconciliation_recovered"].samples}
    assert samples == {"purchase_approved": 4.0, "purchase_refunded": 2.0}
    assert store.get(RUNS, TOTALS_DOC)["runs"] == 2
    store.close()


def test_loop_round_waits_for_the_interval_since_any_replicas_last_run(tmp_path: Path):
    from ingest.config import IngestSettings

    platform = PlatformSettings(backend="embedded", data_dir=tmp_path, service_name="ingest")
    store = open_store(platform, "ingest")
    record_run(store, RecoveryReport("reconciliation", datetime.now(UTC).isoformat().replace("+00:00", "Z")))

    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError("reconciled before the interval passed")

    settings = IngestSettings(platform=platform, hottoks=(), reconcile_interval_seconds=900)
    wait = reconcile_work_round(store, NoCalls(), settings)()
    assert 0 < wait <= 5.0
    store.close()
