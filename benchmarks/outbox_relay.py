"""Outbox figures on the embedded backend: entries added per second (each in its own transaction, as a
webhook or a saga step adds them) and entries relayed per second to the embedded bus.

    make bench BENCH=outbox_relay ARGS="--entries 2000 --keys 200"

Prints one line per figure; numbers go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coursebridge.adapters.sqlite_bus import SqliteBus
from coursebridge.adapters.sqlite_store import SqliteStore
from coursebridge.events import new_event
from coursebridge.events.diagnostics import DIAGNOSTIC_PING
from coursebridge.outbox import Outbox, OutboxRelay
from coursebridge.topology import Subscription, Topology


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=200, help="ordering keys the entries spread over")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore("bench", Path(tmp) / "store.sqlite3")
        bus = SqliteBus(Path(tmp) / "bus.sqlite3")
        bus.provision(Topology(topics=("pings",), subscriptions=(Subscription("bench.pings", "pings"),)))
        outbox = Outbox(store)
        started = time.perf_counter()
        for n in range(args.entries):
            event = new_event(DIAGNOSTIC_PING.type, {"n": n}, source="bench")
            store.transaction(lambda tx, e=event, k=f"key-{n % args.keys}": outbox.add(tx, "pings", e, k))
        added = time.perf_counter() - started
        relay = OutboxRelay(store, bus, batch_size=100)
        started = time.perf_counter()
        published = 0
        while True:
            round_ = relay.relay_once()
            published += round_.published
            if not round_.published:
                break
        relayed = time.perf_counter() - started
        relay.close()
        bus.close()
        store.close()
    print(f"entries {args.entries} over {args.keys} keys")
    print(f"add     {args.entries / added:8.0f} entries/s ({added:.2f} s)")
    print(f"relay   {published / relayed:8.0f} entries/s ({relayed:.2f} s, {published} published)")


if __name__ == "__main__":
    main()
