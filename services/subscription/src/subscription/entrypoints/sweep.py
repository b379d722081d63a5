"""CLI for a Kubernetes CronJob: ``python -m subscription.entrypoints.sweep``.

Runs one sweep at the current time, prints the report as one JSON object (the last line of stdout;
log lines, also JSON, come before it) and exits 0. The events it
decides are staged in the outbox, which the worker's relay publishes. ``--relay`` also publishes them from
here (useful when no worker runs). Exits 1 only when the store cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys

from coursebridge import lookup
from coursebridge.backends import open_bus, open_store
from coursebridge.events.envelope import utc_now
from coursebridge.outbox import OutboxRelay
from coursebridge.runtime.logging import configure_logging
from subscription.config import SubscriptionSettings
from subscription.service_layer.accesses import OUTBOX, relay_all, sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m subscription.entrypoints.sweep", description=__doc__)
    parser.add_argument("--relay", action="store_true", help="also publish the outbox after sweeping")
    args = parser.parse_args(argv)
    settings = SubscriptionSettings.from_env()
    configure_logging("subscription-sweep", settings.platform.log_level)
    # The sweep rewrites the accesses it expires: without the key their email_key would be dropped and
    # operators could no longer find an expired buyer by e-mail.
    lookup.configure_from_env()
    store = open_store(settings.platform, "subscription")
    try:
        report = sweep(store, utc_now(), max_skew=settings.max_clock_skew).to_json()
        if args.relay:
            bus = open_bus(settings.platform)
            try:
                relay = OutboxRelay(store, bus, kind=OUTBOX, service="subscription")
                report["published"] = relay_all(relay)
                relay.close()
            finally:
                bus.close()
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}), file=sys.stderr)
        return 1
    finally:
        store.close()
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
