"""Worker entry point: ``python -m ingest.entrypoints.relay`` publishes the outbox until SIGTERM."""

from __future__ import annotations

import os

from ingest.bootstrap import build_relay_worker
from ingest.config import IngestSettings


def main() -> None:
    settings = IngestSettings.from_env(require_hottok=False)
    worker = build_relay_worker(settings, provision=os.environ.get("COURSEBRIDGE_PROVISION") == "1")
    worker.run_until_signalled()


if __name__ == "__main__":
    main()
