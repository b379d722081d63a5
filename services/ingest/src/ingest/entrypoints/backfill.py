"""``make backfill ARGS="--from 2025-01-01 --to 2025-12-31 [--dry-run]"`` (``python -m
ingest.entrypoints.backfill``; on GKE run it once in an ingest pod): import historical Hotmart sales and
subscriptions so every current buyer gets access on day one.

Interrupted? Run the same command again: finished windows are skipped and the current one continues at
its saved page. Run twice? Nothing is published twice. ``--dry-run`` writes nothing and prints what would
happen: buyers, products, products without a course mapping and the courses to grant (the mapping is
read from the enrollment service's admin API: ENROLLMENT_URL and ADMIN_TOKEN; without them the summary
lists products only and says so).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from typing import Any

import requests
from tqdm import tqdm

from coursebridge.backends import open_store
from coursebridge.runtime.logging import configure_logging, register_secret
from ingest.adapters.hotmart_api import HotmartApi
from ingest.config import IngestSettings
from ingest.service_layer.backfill import BackfillSummary, backfill, parse_day


def course_mapping(enrollment_url: str | None, admin_token: str | None) -> dict[str, list[str]] | None:
    """product id -> course ids, from enrollment's admin API; None when it cannot be asked."""
    if not enrollment_url or not admin_token:
        return None
    try:
        response = requests.get(
            enrollment_url.rstrip("/") + "/admin/products",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=10,
        )
        response.raise_for_status()
    except requests.RequestException:
        return None
    mapping: dict[str, list[str]] = {}
    for product in response.json().get("products") or []:
        product_id = product.get("product_id") or product.get("id")
        if product_id is not None:
            mapping[str(product_id)] = [str(c) for c in product.get("course_ids") or []]
    return mapping


def dry_run_report(summary: BackfillSummary, mapping: dict[str, list[str]] | None) -> dict[str, Any]:
    report: dict[str, Any] = {"dry_run": True, **summary.to_json()}
    if mapping is None:
        report["mapping"] = (
            "unavailable: set ENROLLMENT_URL and ADMIN_TOKEN to see unmapped products and courses"
        )
        return report
    report["products_unmapped"] = sorted(p for p in summary.products if not mapping.get(p))
    grants: dict[str, int] = {}
    for product, sales in summary.products.items():
        for course in mapping.get(product, []):
            grants[course] = grants.get(course, 0) + sales
    report["courses_to_grant"] = grants  # course id -> sales granting it (one per buyer at most)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.entrypoints.backfill", description=__doc__)
    parser.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD (UTC)")
    parser.add_argument("--to", dest="end", required=True, help="last day, YYYY-MM-DD (UTC, included)")
    parser.add_argument("--dry-run", action="store_true", help="read only; print what would be imported")
    parser.add_argument("--window-days", type=int, default=31, help="days per sales-history query")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    args = parser.parse_args(argv)
    try:
        start, end = parse_day(args.start), parse_day(args.end) + timedelta(days=1)
    except ValueError as error:
        parser.error(f"dates must be YYYY-MM-DD: {error}")
    if end <= start:
        parser.error("--to must not be before --from")
    settings = IngestSettings.from_env(require_hottok=False)
    configure_logging("ingest-backfill", settings.platform.log_level)
    if settings.hotmart_api is None:
        print(json.dumps({"error": settings.hotmart_api_status}), file=sys.stderr)
        return 2
    register_secret(settings.hotmart_api.client_secret, settings.hotmart_api.basic, settings.admin_token)
    api = HotmartApi(settings.hotmart_api)
    store = None if args.dry_run else open_store(settings.platform, "ingest")
    bar = tqdm(unit=" sales", disable=args.no_progress, file=sys.stderr, mininterval=0.5)
    try:
        summary = backfill(
            store,
            api,
            start,
            end,
            dry_run=args.dry_run,
            window_days=args.window_days,
            progress=lambda count, _total: bar.update(count),
        )
    except Exception as error:
        bar.close()
        print(
            json.dumps({"error": f"{type(error).__name__}: {error}"[:500], "resume": "run again"}),
            file=sys.stderr,
        )
        return 1
    finally:
        if store is not None:
            store.close()
        api.close()
    bar.close()
    if args.dry_run:
        report = dry_run_report(
            summary, course_mapping(os.environ.get("ENROLLMENT_URL"), settings.admin_token)
        )
    else:
        report = {"dry_run": False, **summary.to_json()}
    report["api_calls"] = api.calls
    report["throttled"] = api.throttled
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
