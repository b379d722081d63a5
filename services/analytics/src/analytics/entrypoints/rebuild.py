"""``python -m analytics.entrypoints.rebuild``: recompute every fact table from the raw event log.

Idempotent (the raw ``events`` table is the log and is never changed); shows a progress bar. On the
embedded warehouse, stop the worker first or let it retry: DuckDB has one writer at a time.
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from analytics.bootstrap import open_warehouse
from analytics.config import AnalyticsSettings
from analytics.service_layer.projector import rebuild


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args(argv)
    settings = AnalyticsSettings.from_env()
    warehouse = open_warehouse(settings)
    warehouse.migrate()
    total = warehouse.count("events")
    with tqdm(total=total, unit="event", desc="rebuilding") as bar:
        done = rebuild(warehouse, settings.pseudonym_key, batch_size=args.batch_size, progress=bar.update)
    print(
        f"rebuilt {done} events: "
        + ", ".join(
            f"{t}={warehouse.count(t)}" for t in ("payments", "enrollments", "subscriptions", "catalogue")
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
