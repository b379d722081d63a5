"""``python -m hotmart_fake``: the fake Hotmart on 127.0.0.1:$HOTMART_FAKE_PORT (default 8091).

Environment: HOTMART_CLIENT_ID / HOTMART_CLIENT_SECRET (the credentials it accepts; defaults
``fake-client-id`` / ``fake-client-secret``); HOTMART_FAKE_RATE_LIMIT (500 calls per minute);
HOTMART_FAKE_SEED=0 starts empty, otherwise a few demo sales of the sample products 4711 / 4712 are
held that no webhook announced, so the first reconciliation of ``make run`` has something to recover.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from hotmart_fake.app import STATE_EXTENSION, create_app
from hotmart_fake.server import FakeHotmartServer
from hotmart_fake.state import HotmartState, Sale, Subscription

HOUR_MS = 3_600_000


def seed_demo(state: HotmartState) -> None:
    now = int(time.time() * 1000)
    state.add_sale(
        Sale("HPDEMO0000001", 4712, "demo.one-off@example.com", order_date=now - 2 * HOUR_MS, price=297.0)
    )
    refunded = Sale("HPDEMO0000002", 4712, "demo.refund@example.com", order_date=now - 3 * HOUR_MS)
    refunded.set_status("REFUNDED", now - HOUR_MS)
    state.add_sale(refunded)
    state.add_subscription(
        Subscription(
            "DEMOSUB1",
            4711,
            "demo.member@example.com",
            transaction="HPDEMO0000003",
            accession_date=now - 4 * HOUR_MS,
            plan_id=101,
            plan_name="Monthly",
        )
    )
    state.add_sale(
        Sale(
            "HPDEMO0000003",
            4711,
            "demo.member@example.com",
            order_date=now - 4 * HOUR_MS,
            subscriber_code="DEMOSUB1",
            recurrency_number=1,
            price=49.9,
        )
    )


def main() -> int:
    port = int(os.environ.get("HOTMART_FAKE_PORT", "8091"))
    state = HotmartState(
        os.environ.get("HOTMART_CLIENT_ID") or "fake-client-id",
        os.environ.get("HOTMART_CLIENT_SECRET") or "fake-client-secret",
        rate_limit=int(os.environ.get("HOTMART_FAKE_RATE_LIMIT", "500")),
    )
    if os.environ.get("HOTMART_FAKE_SEED", "1") != "0":
        seed_demo(state)
    app = create_app(state=state)
    server = FakeHotmartServer(app, "127.0.0.1", port)
    held = app.extensions[STATE_EXTENSION]
    print(f"Hotmart fake on {server.url} (token URL {server.token_url})")
    print(
        f"  holds {len(held.sales)} sales, {len(held.subscriptions)} subscriptions; "
        f"{held.rate_limit} calls/min; controls under {server.url}/_fake/",
        flush=True,
    )

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
