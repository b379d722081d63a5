"""BigQuery write cost per 10,000 events: the former MERGE-per-batch path against load-job appends.

    uv run python benchmarks/analytics_bigquery_writes.py [--events 10000] [--emulator]

Counted estimate (no cloud): the events are projected and cut into the batches each worker would write.
Before: batches of at most 64 events (ANALYTICS_MAX_IN_FLIGHT bounded them), one MERGE per non-empty
table, each a DML job billed at least 10 MB. After: one load job per non-empty table per batch (batches
of up to 10,000 events or 90 s on BigQuery); load jobs bill no bytes and are not DML.
With ``--emulator`` the new path also runs against goccy/bigquery-emulator and the jobs it recorded are
listed by type (the emulator reports no bytes billed, so bytes stay the counted figure).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from analytics.domain.projection import Projection, project
from analytics.synthetic import generate_events

MIN_DML_BILLED = 10 * 1024 * 1024


def batches(events: list, size: int) -> list[Projection]:
    out = []
    for start in range(0, len(events), size):
        batch = Projection()
        for event in events[start : start + size]:
            batch.extend(project(event, b"bench"))
        out.append(batch.deduplicated())
    return out


def tables_written(batch: Projection) -> int:
    return sum(1 for rows in batch.rows.values() if rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--emulator", action="store_true")
    args = parser.parse_args()
    events = list(generate_events(args.events, seed=3, days=365))
    per = 10_000 / len(events)

    before = batches(events, 64)
    merges = sum(tables_written(b) for b in before)
    print(
        f"before: {len(before)} batches of <= 64 events, {merges} MERGE (DML) jobs, "
        f">= {merges * MIN_DML_BILLED / 2**20:,.0f} MiB billed "
        f"-> per 10,000 events: {merges * per:,.0f} DML jobs, >= {merges * per * 10 / 1024:,.2f} GiB"
    )
    after = batches(events, 10_000)
    loads = sum(tables_written(b) for b in after)
    print(
        f"after: {len(after)} batch(es) of <= 10,000 events, {loads} load jobs, 0 DML jobs, 0 bytes billed "
        f"-> per 10,000 events: {loads * per:,.0f} load jobs"
    )
    worst = sum(tables_written(b) for b in before)
    print(
        f"after, worst case (a trickle: one batch per 64 events): {worst * per:,.0f} load jobs, still 0 DML, "
        "0 bytes billed"
    )

    if args.emulator:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analytics"))
        from bigquery_emulator import BigQueryEmulator, require_binary

        from analytics.adapters.bigquery_warehouse import BigQueryWarehouse

        emulator = BigQueryEmulator(require_binary(), Path(tempfile.mkdtemp(prefix="bq-bench-")))
        emulator.start()
        try:
            client = emulator.client()
            warehouse = BigQueryWarehouse(emulator.project, "bench", client=client, job_timeout=600)
            started = time.perf_counter()
            warehouse.migrate()
            print(f"emulator: migrate {time.perf_counter() - started:.1f}s")
            started = time.perf_counter()
            warehouse.migrate()
            print(f"emulator: second migrate {time.perf_counter() - started:.1f}s")
            before_jobs = {j.job_id for j in client.list_jobs()}
            started = time.perf_counter()
            for batch in after:
                warehouse.write(batch)
            elapsed = time.perf_counter() - started
            jobs = [j for j in client.list_jobs() if j.job_id not in before_jobs]
            kinds = Counter(
                j.job_id.split("_")[0] if j.job_id.startswith("coursebridge_") else "other" for j in jobs
            )
            print(
                f"emulator: wrote {len(events)} events in {elapsed:.1f}s "
                f"({len(events) / elapsed:,.0f} events/s); "
                f"jobs recorded: {dict(kinds)} (load jobs carry the coursebridge_ prefix)"
            )
            started = time.perf_counter()
            rows = warehouse.query_view("revenue_daily_totals")
            print(f"emulator: revenue_daily_totals {len(rows)} rows in {time.perf_counter() - started:.2f}s")
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
