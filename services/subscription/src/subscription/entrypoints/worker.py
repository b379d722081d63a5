"""Worker entry point: ``python -m subscription.entrypoints.worker``.

Consumes ``subscription.payments`` and ``subscription.catalogue``, relays the outbox to the
``subscriptions`` topic, and sweeps every ``SUBSCRIPTION_SWEEP_INTERVAL_SECONDS`` when that is set.
"""

from __future__ import annotations

import os

from subscription.bootstrap import build_worker
from subscription.config import SubscriptionSettings


def main() -> None:
    settings = SubscriptionSettings.from_env()
    worker = build_worker(settings, provision=os.environ.get("COURSEBRIDGE_PROVISION") == "1")
    worker.run_until_signalled()


if __name__ == "__main__":
    main()
