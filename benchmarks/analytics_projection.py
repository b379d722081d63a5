"""Projection throughput into DuckDB and revenue query time over N synthetic events (default 1,000,000).

    uv run python benchmarks/analytics_projection.py [--events N] [--batch 5000] [--dir DIR]

Measures the worker's write path (projection + pseudonymisation + INSERT ... ON CONFLICT DO NOTHING in
one transaction per batch, connection opened per batch as the worker does), then the revenue views.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

from tqdm import tqdm

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse
from analytics.service_layer.projector import project_events, rebuild
from analytics.synthetic import generate_events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true", help="also time a rebuild from the raw log")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="analytics-bench-"))
    warehouse = DuckDBWarehouse(folder / "analytics.duckdb")
    warehouse.migrate()
    key = b"benchmark-key"

    started = time.perf_counter()
    written = 0
    batch = []
    with tqdm(total=args.events, unit="event", desc="projecting") as bar:
        for event in generate_events(args.events, days=365):
            batch.append(event)
            if len(batch) >= args.batch:
                written += project_events(warehouse, batch, key)
                bar.update(len(batch))
                batch = []
        if batch:
            written += project_events(warehouse, batch, key)
            bar.update(len(batch))
    elapsed = time.perf_counter() - started
    print(
        f"projected {written} events in {elapsed:.1f}s: {written / elapsed:,.0f} events/s "
        f"(batch {args.batch}; includes generating the events)"
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
