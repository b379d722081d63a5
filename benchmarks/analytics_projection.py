"""Projection throughput into DuckDB and revenue query time over N synthetic events (default 1,000,000).

    uv run python benchmarks/analytics_projection.py [--events N] [--batch 5000] [--dir DIR] [--no-learning]

Measures the worker's write path (projection + pseudonymisation + INSERT ... ON CONFLICT DO NOTHING in
one transaction per batch, connection opened per batch as the worker does), then the revenue views.
Unless ``--no-learning``, each batch of payments also carries its buyers' TalentLMS activity (about one
learning event per payment event, some re-read), and the learning views are timed too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

from tqdm import tqdm

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.service_layer import reports
from analytics.service_layer.projector import project_events, rebuild
from analytics.synthetic import generate_events, learning_events_for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true", help="also time a rebuild from the raw log")
    parser.add_argument("--no-learning", action="store_true", help="payments only, no learning events")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="analytics-bench-"))
    warehouse = DuckDBWarehouse(folder / "analytics.duckdb")
    warehouse.migrate()
    key = b"benchmark-key"

    started = time.perf_counter()
    written = 0
    learning = 0
    batch = []

    def flush(batch: list) -> int:
        nonlocal learning
        if not args.no_learning:
            activity = learning_events_for(batch, seed=len(batch) + written)
            learning += len(activity)
            batch = batch + activity
        return project_events(warehouse, batch, key)

    with tqdm(total=args.events, unit="payment event", desc="projecting") as bar:
        for event in generate_events(args.events, days=365):
            batch.append(event)
            if len(batch) >= args.batch:
                written += flush(batch)
                bar.update(len(batch))
                batch = []
        if batch:
            written += flush(batch)
            bar.update(len(batch))
    elapsed = time.perf_counter() - started
    print(
        f"projected {written} events in {elapsed:.1f}s: {written / elapsed:,.0f} events/s "
        f"(batch {args.batch} payment events + their {learning} learning events in all; "
        f"includes generating the events)"
    )

    def timed(label: str, work) -> None:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            rows = work()
            best = min(best, time.perf_counter() - t)
        print(f"{label}: {best * 1000:.0f} ms ({len(rows)} rows, best of 3)")

    timed(
        "revenue_daily 1 month, BRL",
        lambda: warehouse.revenue_daily(date(2025, 3, 1), date(2025, 3, 31), "BRL"),
    )
    timed("revenue_daily full year", lambda: warehouse.revenue_daily(date(2025, 1, 1), date(2025, 12, 31)))
    timed("mrr_monthly", lambda: warehouse.query_view("mrr_monthly"))
    timed("churn_monthly", lambda: warehouse.query_view("churn_monthly"))
    timed("refund_rates_monthly", lambda: warehouse.query_view("refund_rates_monthly"))
    if not args.no_learning:
        year = reports.Scope(date(2025, 1, 1), date(2025, 12, 31))
        timed("learning_purchases", lambda: warehouse.query_view("learning_purchases"))
        timed("GET /learning/cohorts full year", lambda: reports.learning_cohorts(warehouse, year)["rows"])
        timed(
            "GET /learning/refunds-by-progress full year",
            lambda: reports.refunds_by_progress(warehouse, year)["rows"],
        )
    t = time.perf_counter()
    again = project_events(warehouse, list(generate_events(args.batch, days=365)), key)
    print(
        f"re-projecting {args.batch} known events (all duplicates): {again} new, "
        f"{(time.perf_counter() - t) * 1000:.0f} ms"
    )
    if args.rebuild:
        t = time.perf_counter()
        total = rebuild(warehouse, key, batch_size=20_000)
        print(f"rebuild of {total} events: {time.perf_counter() - t:.1f}s")
    print(f"file: {warehouse.path} ({warehouse.path.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
