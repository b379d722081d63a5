"""What the console's Revenue and Learning data cost over analytics' own API, on loopback.

    uv run python benchmarks/console_reports.py [--events 100000] [--rounds 20]

Projects N synthetic payment events into a DuckDB warehouse, serves analytics' API and the console
(threaded WSGI servers on 127.0.0.1), signs in, then times per range (90 d, 12 m): the five analytics
calls one after the other (what a page calling analytics itself would wait for), and the console's
``/revenue/data`` (the same five, fanned out at once, plus the proxy hop). Median and p95 in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "console" / "tests"))
from inproc_stack import ADMIN_TOKEN, InProcessStack

from analytics.synthetic import generate_events

VIEWS = ("mrr_monthly", "churn_monthly", "refund_rates_monthly")


def _time(call, rounds: int) -> tuple[float, float]:
    call()  # warm
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    stack = InProcessStack(Path(tempfile.mkdtemp(prefix="console-bench-")))
    try:
        console = stack.serve_console()
        now = datetime.now(UTC)
        started = time.perf_counter()
        stack.record_events(list(generate_events(args.events, start=now - timedelta(days=365), days=365)))
        print(f"projected {args.events:,} events in {time.perf_counter() - started:.1f} s")
        http = requests.Session()
        token = http.get(console + "/signin", timeout=10).text.split('name="csrf_token" value="')[1]
        http.post(
            console + "/signin",
            data={"csrf_token": token.split('"')[0], "operator": "bench", "token": ADMIN_TOKEN},
            timeout=10,
        ).raise_for_status()
        analytics = requests.Session()
        analytics.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        base = stack.urls["analytics"]
        for preset, days in (("90d", 90), ("12m", 365)):
            query = f"from={(now - timedelta(days=days - 1)).date()}&to={now.date()}"

            def direct(q: str = query) -> None:
                for path in ("/revenue/daily", "/revenue/summary", *(f"/views/{v}" for v in VIEWS)):
                    analytics.get(f"{base}{path}?{q}", timeout=30).raise_for_status()

            def through_console(q: str = query) -> None:
                answer = http.get(f"{console}/revenue/data?{q}", timeout=60)
                if answer.status_code != 200:
                    raise SystemExit(f"/revenue/data: HTTP {answer.status_code} {answer.text[:300]}")

            d_med, d_p95 = _time(direct, args.rounds)
            c_med, c_p95 = _time(through_console, args.rounds)
            size = len(http.get(f"{console}/revenue/data?{query}", timeout=30).content)
            print(
                f"{preset}: analytics x5 in sequence median {d_med:.0f} ms p95 {d_p95:.0f} ms; "
                f"console /revenue/data median {c_med:.0f} ms p95 {c_p95:.0f} ms; "
                f"answer {size / 1024:.0f} KiB"
            )
        learn_med, learn_p95 = _time(
            lambda: http.get(f"{console}/learning/data?range=90d", timeout=30).raise_for_status(), args.rounds
        )
        print(f"console /learning/data (90 d) median {learn_med:.0f} ms p95 {learn_p95:.0f} ms")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
