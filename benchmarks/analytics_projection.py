"""Projection throughput into DuckDB and revenue query time over N synthetic events (default 1,000,000).

    uv run python benchmarks/analytics_projection.py [--events N] [--batch 5000] [--dir DIR] [--rebuild]
        [--no-learning]
    uv run python benchmarks/analytics_projection.py --emulator --emulator-events 1000,3000,10000

Measures the worker's write path (projection + pseudonymisation + INSERT ... ON CONFLICT DO NOTHING in
one transaction per batch, connection opened per batch as the worker does; on DuckDB this includes
refreshing the stored ``purchase_charges`` rows of the batch's transactions), then the revenue reads the
API makes (a read-only connection per request, as the API opens it). Each read is timed twice in the
same run: on the model as stored (``purchase_charges`` a table) and on the same SQL with every view
inlined down to the raw tables (what each request computed before ``purchase_charges`` was stored); the
two answers are compared and must be equal. Peak RSS of the process is printed after each phase.
Unless ``--no-learning``, each batch of payments also carries its buyers' TalentLMS activity (about one
learning event per payment event, some re-read), and the learning reads are timed too.

``--emulator`` then writes the same kind of events through the BigQuery adapter (load jobs) into
goccy/bigquery-emulator (``tools/install_bigquery_emulator.sh``) for each size of ``--emulator-events``
and times the revenue reads there, each bounded by ``--emulator-timeout`` seconds; a read that does not
finish is reported as such and the larger sizes are skipped.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from tqdm import tqdm

from analytics.adapters import duckdb_warehouse
from analytics.adapters.duckdb_warehouse import SCHEMA, DuckDBWarehouse
from analytics.ports import Warehouse
from analytics.service_layer import reports
from analytics.service_layer.projector import project_events, rebuild
from analytics.synthetic import generate_events, learning_events_for
from analytics.views import VIEW_KEYS, inlined, transpile_to_duckdb

KEY = b"benchmark-key"
MONTH = (date(2025, 3, 1), date(2025, 3, 31))
YEAR = (date(2025, 1, 1), date(2025, 12, 31))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def best_of(work: Callable[[], list[Any]], runs: int = 3) -> tuple[float, list[Any]]:
    best, rows = float("inf"), []
    for _ in range(runs):
        started = time.perf_counter()
        rows = work()
        best = min(best, time.perf_counter() - started)
    return best, rows


def live_sql(view: str, where: str = "") -> str:
    """A view's SQL with every view it reads inlined to the raw tables: nothing stored is used."""
    body = transpile_to_duckdb(inlined(view, lambda table: f"{SCHEMA}.{table}"))
    keys = ", ".join(VIEW_KEYS[view])
    return f"SELECT * FROM (\n{body}\n) AS v" + (f" WHERE {where}" if where else "") + f" ORDER BY {keys}"


def duckdb_reads(warehouse: DuckDBWarehouse) -> None:
    month = {"start": MONTH[0], "end": MONTH[1], "currency": "BRL"}
    year = {"start": YEAR[0], "end": YEAR[1]}
    reads: list[tuple[str, Callable[[], list[Any]], Callable[[], list[Any]]]] = [
        (
            "GET /revenue/daily 1 month, BRL",
            lambda: warehouse.revenue_daily(*MONTH, "BRL"),
            lambda: warehouse.query(
                live_sql("revenue_daily_totals", "day BETWEEN $start AND $end AND currency = $currency"),
                month,
            ),
        ),
        (
            "GET /revenue/daily full year",
            lambda: warehouse.revenue_daily(*YEAR),
            lambda: warehouse.query(live_sql("revenue_daily_totals", "day BETWEEN $start AND $end"), year),
        ),
    ]
    for view in ("mrr_monthly", "churn_monthly", "refund_rates_monthly"):
        reads.append(
            (
                view,
                lambda view=view: warehouse.query_view(view),
                lambda view=view: warehouse.query(live_sql(view)),
            )
        )
    print(
        f"{'read (best of 3, read-only connection each)':<46} {'stored':>9} {'live':>9} {'live/stored':>12}"
    )
    for label, stored, live in reads:
        stored_s, stored_rows = best_of(stored)
        live_s, live_rows = best_of(live)
        same = "equal" if stored_rows == live_rows else "DIFFERENT ANSWERS"
        print(
            f"{label:<46} {stored_s * 1000:>7.0f}ms {live_s * 1000:>7.0f}ms {live_s / stored_s:>11.1f}x "
            f"({len(stored_rows)} rows, {same})"
        )
        if stored_rows != live_rows:
            sys.exit(f"{label}: the stored model answers differently from the live views")


def learning_reads(warehouse: DuckDBWarehouse) -> None:
    """The Learning page's reads over the synthetic year (best of 3, as the API answers them)."""
    year = reports.Scope(date(2025, 1, 1), date(2025, 12, 31))
    for label, work in (
        ("learning_purchases", lambda: warehouse.query_view("learning_purchases")),
        ("GET /learning/cohorts full year", lambda: reports.learning_cohorts(warehouse, year)["rows"]),
        (
            "GET /learning/refunds-by-progress full year",
            lambda: reports.refunds_by_progress(warehouse, year)["rows"],
        ),
    ):
        seconds, rows = best_of(work)
        print(f"{label:<46} {seconds * 1000:>7.0f}ms ({len(rows)} rows)")


def count_refresh_time() -> list[float]:
    """Wrap the adapter's per-batch refresh of the stored charges to report its share of the write time."""
    spent: list[float] = []
    refresh = duckdb_warehouse._refresh_stored

    def timed(*args: Any) -> None:
        started = time.perf_counter()
        refresh(*args)
        spent.append(time.perf_counter() - started)

    duckdb_warehouse._refresh_stored = timed  # type: ignore[assignment]
    return spent


def run_duckdb(args: argparse.Namespace) -> None:
    refresh_spent = count_refresh_time()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="analytics-bench-"))
    warehouse = DuckDBWarehouse(folder / "analytics.duckdb")
    warehouse.migrate()

    started = time.perf_counter()
    written = 0
    learning = 0
    batch: list[Any] = []

    def flush(batch: list[Any]) -> int:
        nonlocal learning
        if not args.no_learning:
            activity = learning_events_for(batch, seed=len(batch) + written)
            learning += len(activity)
            batch = batch + activity
        return project_events(warehouse, batch, KEY)

    with tqdm(total=args.events, unit="payment event", desc="projecting", mininterval=5) as bar:
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
        f"(batch {args.batch} payment events + their {learning} learning events in all; includes "
        f"generating the events); peak RSS {peak_rss_mb():,.0f} MB"
    )
    print(
        f"of which refreshing the stored purchase_charges: {sum(refresh_spent):.1f}s "
        f"({len(refresh_spent)} batches, {sum(refresh_spent) / elapsed:.0%} of the time)"
    )
    charges = warehouse.query(f"SELECT count(*) AS n FROM {SCHEMA}.purchase_charges")[0]["n"]
    print(f"payments rows {warehouse.count('payments'):,}; stored purchase_charges rows {charges:,}")
    duckdb_reads(warehouse)
    if not args.no_learning:
        learning_reads(warehouse)
    t = time.perf_counter()
    again = project_events(warehouse, list(generate_events(args.batch, days=365)), KEY)
    print(
        f"re-projecting {args.batch} known events (all duplicates): {again} new, "
        f"{(time.perf_counter() - t) * 1000:.0f} ms"
    )
    if args.rebuild:
        t = time.perf_counter()
        total = rebuild(warehouse, KEY, batch_size=20_000)
        print(f"rebuild of {total} events: {time.perf_counter() - t:.1f}s")
    size_mb = warehouse.path.stat().st_size / 1e6
    print(f"file: {warehouse.path} ({size_mb:.0f} MB); peak RSS {peak_rss_mb():,.0f} MB")


def timed_with_bound(label: str, work: Callable[[], list[Any]], bound: float) -> bool:
    """Run one read in a daemon thread and wait at most ``bound`` seconds; False when it did not finish."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.extend(work())
        except BaseException as error:  # reported below
            errors.append(error)

    started = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    if thread.is_alive():
        print(f"  {label}: did not finish within {bound:.0f}s")
        return False
    if errors:
        print(f"  {label}: failed after {time.perf_counter() - started:.1f}s: {errors[0]!r}"[:400])
        return False
    print(f"  {label}: {time.perf_counter() - started:.2f}s ({len(result)} rows)")
    return True


def run_emulator(args: argparse.Namespace) -> None:
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests"))
    sys.path.insert(0, str(root / "tests" / "analytics"))
    from bigquery_emulator import BigQueryEmulator, require_binary

    from analytics.adapters.bigquery_warehouse import BigQueryWarehouse

    for size in args.emulator_events:
        # A fresh emulator per size: after a read is abandoned the emulator keeps computing it.
        emulator = BigQueryEmulator(require_binary(), Path(tempfile.mkdtemp(prefix="bq-bench-")))
        emulator.start()
        try:
            client = emulator.client()
            warehouse: Warehouse = BigQueryWarehouse(
                emulator.project, "bench", client=client, job_timeout=args.emulator_timeout
            )
            warehouse.migrate()
            events = list(generate_events(size, days=365))
            started = time.perf_counter()
            for start in range(0, len(events), 10_000):  # the worker's BigQuery batch size
                project_events(warehouse, events[start : start + 10_000], KEY)
            elapsed = time.perf_counter() - started
            print(
                f"emulator, {size:,} events: written in {elapsed:.1f}s ({size / elapsed:,.0f} events/s, "
                f"load jobs)"
            )
            finished = timed_with_bound(
                "GET /revenue/daily 1 month, BRL",
                lambda w=warehouse: w.revenue_daily(*MONTH, "BRL"),
                args.emulator_timeout,
            ) and timed_with_bound(
                "GET /revenue/daily full year",
                lambda w=warehouse: w.revenue_daily(*YEAR),
                args.emulator_timeout,
            )
            if finished and not args.emulator_revenue_only:
                for view in ("mrr_monthly", "churn_monthly", "refund_rates_monthly"):
                    timed_with_bound(view, lambda w=warehouse, v=view: w.query_view(v), args.emulator_timeout)
        finally:
            emulator.stop()
        if not finished:
            print(f"emulator: stopping at {size:,} events (larger sizes would not finish either)")
            return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true", help="also time a rebuild from the raw log")
    parser.add_argument("--no-learning", action="store_true", help="payments only, no learning events")
    parser.add_argument("--emulator", action="store_true", help="time the reads on the BigQuery emulator")
    parser.add_argument(
        "--emulator-only", action="store_true", help="skip the DuckDB part (implies --emulator)"
    )
    parser.add_argument(
        "--emulator-events",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1000, 3000, 10_000],
        help="comma-separated sizes, smallest first",
    )
    parser.add_argument(
        "--emulator-revenue-only", action="store_true", help="on the emulator, time GET /revenue/daily only"
    )
    parser.add_argument("--emulator-timeout", type=float, default=180.0, help="bound per read, seconds")
    args = parser.parse_args()
    print(f"peak RSS before any work {peak_rss_mb():,.0f} MB")
    if not args.emulator_only:
        run_duckdb(args)
    if args.emulator or args.emulator_only:
        run_emulator(args)


if __name__ == "__main__":
    main()
