"""Reconciliation: ``python -m ingest.entrypoints.reconcile`` (one round; the GKE CronJob) and the loop
``make run`` runs in the relay worker under a singleton lease.

Prints the round's report as one JSON object (the last line of stdout). Exits 0 after a round, 2 when the
Hotmart API features are off (no credentials), 1 when the round failed (Hotmart or the store unreachable:
nothing was assumed, the next round covers the same window).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from coursebridge.backends import open_store
from coursebridge.events.envelope import parse_time, utc_now
from coursebridge.ports import DocumentStore
from coursebridge.runtime.logging import configure_logging, register_secret
from ingest.adapters.hotmart_api import HotmartApi
from ingest.config import IngestSettings
from ingest.service_layer.recovery import RUNS, TOTALS_DOC, reconcile

log = structlog.get_logger(__name__)


def reconcile_round(store: DocumentStore, api: HotmartApi, settings: IngestSettings) -> dict:
    report = reconcile(
        store,
        api,
        utc_now(),
        lookback=timedelta(hours=settings.reconcile_lookback_hours),
        refund_lookback=timedelta(days=settings.reconcile_refund_lookback_days),
    )
    summary = report.to_json()
    if summary["recovered_total"]:
        log.warning(
            "reconciliation.recovered", recovered=summary["recovered"], api_calls=summary["api_calls"]
        )
    else:
        log.info("reconciliation.done", examined=summary["examined"], api_calls=summary["api_calls"])
    return summary


def reconcile_work_round(
    store: DocumentStore, api: HotmartApi, settings: IngestSettings
) -> Callable[[], float | None]:
    """A ``singleton`` work round: reconcile once the interval passed since the last run (any replica's)."""

    def work_round() -> float | None:
        totals = store.get(RUNS, TOTALS_DOC) or {}
        last = totals.get("last_run_at")
        if last is not None:
            due_in = settings.reconcile_interval_seconds - (utc_now() - parse_time(last)).total_seconds()
            if due_in > 0:
                return min(due_in, 5.0)
        reconcile_round(store, api, settings)
        return 5.0

    return work_round


class RecoveredTotals(Collector):
    """Exports the durable totals of every run (CronJob pods exit before a scrape; the totals do not)."""

    def __init__(self, store: DocumentStore, max_age: float = 30.0) -> None:
        self._store = store
        self._max_age = max_age
        self._cached: tuple[float, dict] = (0.0, {})

    def _totals(self) -> dict:
        read_at, totals = self._cached
        if time.monotonic() - read_at > self._max_age:
            try:
                totals = self._store.get(RUNS, TOTALS_DOC) or {}
            except Exception:  # a scrape never fails on the store: the last value stays
                return totals
            self._cached = (time.monotonic(), totals)
        return totals

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        totals = self._totals()
        recovered = CounterMetricFamily(
            "coursebridge_reconciliation_recovered",
            "Events recovered from Hotmart's API that no webhook delivered, by kind",
            labels=["kind"],
        )
        for kind, count in sorted((totals.get("recovered") or {}).items()):
            recovered.add_metric([kind], float(count))
        yield recovered
        if totals.get("last_run_at"):
            last = GaugeMetricFamily(
                "coursebridge_reconciliation_last_run_timestamp_seconds",
                "Unix time of the last reconciliation",
            )
            last.add_metric([], parse_time(totals["last_run_at"]).timestamp())
            yield last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.entrypoints.reconcile", description=__doc__)
    parser.parse_args(argv)
    settings = IngestSettings.from_env(require_hottok=False)
    configure_logging("ingest-reconcile", settings.platform.log_level)
    if settings.hotmart_api is None:
        print(json.dumps({"status": "off", "reason": settings.hotmart_api_status}))
        return 2
    register_secret(settings.hotmart_api.client_secret, settings.hotmart_api.basic)
    store = open_store(settings.platform, "ingest")
    api = HotmartApi(settings.hotmart_api)
    try:
        summary = reconcile_round(store, api, settings)
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}), file=sys.stderr)
        return 1
    finally:
        api.close()
        store.close()
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
