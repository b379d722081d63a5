"""Worker entry point: ``python -m enrollment.entrypoints.worker`` runs the saga until SIGTERM.

Subscribes to ``enrollment.payments`` and ``enrollment.subscriptions``; runs the outbox relay (enrollment
and catalogue events) and the loop that applies parked approvals once their product is mapped.
"""

from __future__ import annotations

import os

from enrollment.bootstrap import build_worker
from enrollment.config import EnrollmentSettings


def main() -> None:
    settings = EnrollmentSettings.from_env()
    worker = build_worker(settings, provision=os.environ.get("COURSEBRIDGE_PROVISION") == "1")
    worker.run_until_signalled()


if __name__ == "__main__":
    main()
