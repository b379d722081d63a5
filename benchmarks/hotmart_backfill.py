"""Backfill of N historical sales (default 5,000) against the fake Hotmart on 127.0.0.1.

Prints: wall time, sales imported, events published, API calls (by endpoint), the most calls the fake saw
in any rate-limit window, and how many 429s it answered. The fake enforces Hotmart's 500 calls/minute.
``--page-size`` below Hotmart's 500 makes the run call-bound, to show the limiter at work.

    uv run python benchmarks/hotmart_backfill.py [--sales 5000] [--page-size 500]
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from coursebridge.backends import open_store
from coursebridge.config import PlatformSettings
from hotmart_fake import STATE_EXTENSION, Sale, Subscription, create_app
from hotmart_fake.server import FakeHotmartServer
from ingest.adapters.hotmart_api import HotmartApi, HotmartApiSettings
from ingest.service_layer.backfill import backfill

DAY_MS = 86_400_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sales", type=int, default=5000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--calls-per-minute", type=int, default=450)
    args = parser.parse_args()
    app = create_app("cid", "csecret")
    state = app.extensions[STATE_EXTENSION]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    base = int(start.timestamp() * 1000)
    for n in range(args.sales):
        code = f"SUB{n:06d}" if n % 4 == 0 else None
        sale = Sale(
            f"HPBENCH{n:08d}",
            4711 if code else 4712,
            f"buyer{n}@example.com",
            order_date=base + (n * 364 * DAY_MS) // args.sales,
            subscriber_code=code,
        )
        if n % 5 == 0:
            sale.set_status("COMPLETE")
        state.add_sale(sale)
        if code:
            state.add_subscription(Subscription(code, 4711, f"buyer{n}@example.com", accession_date=base + n))
    with tempfile.TemporaryDirectory() as tmp, FakeHotmartServer(app) as server:
        store = open_store(
            PlatformSettings(backend="embedded", data_dir=Path(tmp), service_name="ingest"), "ingest"
        )
        api = HotmartApi(
            HotmartApiSettings(
                "cid",
                "csecret",
                base64.b64encode(b"cid:csecret").decode(),
                api_base_url=server.url,
                auth_url=server.token_url,
                calls_per_minute=args.calls_per_minute,
            ),
            page_size=args.page_size,
        )
        began = time.perf_counter()
        summary = backfill(store, api, start, datetime(2026, 1, 1, tzinfo=UTC))
        elapsed = time.perf_counter() - began
        again_began = time.perf_counter()
        again = backfill(store, api, start, datetime(2026, 1, 1, tzinfo=UTC))
        again_elapsed = time.perf_counter() - again_began
        store.close()
    print(f"sales held            {args.sales}  (page size {args.page_size})")
    print(f"imported              {summary.sales} sales, {len(summary.buyers)} buyers in {elapsed:.1f} s")
    print(f"published             {dict(summary.published)}")
    print(f"API calls             {dict(state.calls)}  (client counted {api.calls})")
    window = f"{state.rate_limit} per {state.rate_window_seconds:g} s"
    print(f"peak calls per window {state.max_calls_in_window} of {window}")
    print(f"429 answers           {state.throttled}; limiter waited {api._limiter.waited:.1f} s")
    published_again = sum(again.published.values())
    print(f"second run            {published_again} published, {again.resumed_windows} windows skipped")
    print(f"                      in {again_elapsed:.1f} s")


if __name__ == "__main__":
    main()
