"""Worker entry point: ``python -m enrollment.entrypoints.worker`` runs until SIGTERM.

Subscribes to ``enrollment.payments`` and ``enrollment.subscriptions`` (decide and queue), and runs the
singleton loops of ``entrypoints.loops`` (the TalentLMS dispatcher and the outbox relay), each under a lease.
Without TalentLMS credentials it stops at once with a clear message instead of a traceback.
"""

from __future__ import annotations

import os
import sys

from enrollment.bootstrap import TalentLmsNotConfigured, build_worker
from enrollment.config import EnrollmentSettings


def main() -> None:
    settings = EnrollmentSettings.from_env()
    try:
        worker = build_worker(settings, provision=os.environ.get("COURSEBRIDGE_PROVISION") == "1")
    except TalentLmsNotConfigured as missing:
        sys.exit(f"enrollment worker: {missing}")
    worker.run_until_signalled()


if __name__ == "__main__":
    main()
