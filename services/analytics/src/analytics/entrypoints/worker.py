"""Worker entry point: ``python -m analytics.entrypoints.worker`` projects every topic until SIGTERM."""

from __future__ import annotations

import os

from analytics.bootstrap import build_worker
from analytics.config import AnalyticsSettings


def main() -> None:
    settings = AnalyticsSettings.from_env()
    worker, projector = build_worker(settings, provision=os.environ.get("COURSEBRIDGE_PROVISION") == "1")
    try:
        worker.run_until_signalled()
    finally:
        projector.stop()


if __name__ == "__main__":
    main()
