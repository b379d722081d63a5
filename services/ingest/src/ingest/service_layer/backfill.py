"""Backfill (migration): import historical sales and subscriptions so every current buyer has access on
day one. Idempotent (the same facts as reconciliation, deduplicated the same way), resumable (a checkpoint
per window and status, with the next page's cursor), within the API's rate limit (the client's limiter).

The period is split into windows (``window_days``); each window is read once per granting status
(APPROVED, COMPLETE) — refunded or charged-back sales grant nothing, so a migration need not import them.
Subscriptions cancelled during the period are imported too, so access ends at their paid-through date.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from coursebridge.events.envelope import format_time, utc_now
from coursebridge.ports import DocumentStore
from ingest.adapters.hotmart_api import SALES_HISTORY, SUBSCRIPTIONS, HotmartApi, HotmartApiError
from ingest.domain.hotmart import EARLIEST_PLAUSIBLE
from ingest.domain.rest import (
    CANCELLED_SUBSCRIPTION_STATUSES,
    GRANTING_STATUSES,
    ms,
    sale_events,
    subscription_event,
)
from ingest.service_layer.recovery import RecoveryReport, SubscriptionLookup, publish_recovered, record_run

log = structlog.get_logger(__name__)

BACKFILL = "backfill"
CHECKPOINTS = "backfill_checkpoints"
Progress = Callable[[int, int | None], None]  # (items just processed, total of this listing if known)


@dataclass
class BackfillSummary:
    sales: int = 0
    buyers: set[str] = field(default_factory=set)
    products: Counter[str] = field(default_factory=Counter)
    published: Counter[str] = field(default_factory=Counter)
    already_known: int = 0
    subscriptions_cancelled: int = 0
    resumed_windows: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "sales": self.sales,
            "buyers": len(self.buyers),
            "products": dict(self.products),
            "published": dict(self.published),
            "already_known": self.already_known,
            "subscriptions_cancelled": self.subscriptions_cancelled,
            "resumed_windows": self.resumed_windows,
        }


def windows(start: datetime, end: datetime, days: int) -> Iterator[tuple[datetime, datetime]]:
    cursor = start
    while cursor < end:
        upper = min(end, cursor + timedelta(days=days))
        yield cursor, upper
        cursor = upper


def backfill(
    store: DocumentStore | None,
    api: HotmartApi,
    start: datetime,
    end: datetime,
    *,
    dry_run: bool = False,
    window_days: int = 31,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> BackfillSummary:
    """Import [start, end). ``store`` None only for a dry run (nothing is written)."""
    if not dry_run and store is None:
        raise ValueError("a backfill that publishes needs the store")
    now = now or utc_now()
    run_id = f"{start.date().isoformat()}_{end.date().isoformat()}"
    summary = BackfillSummary()
    checkpoint = (store.get(CHECKPOINTS, run_id) if store is not None and not dry_run else None) or {
        "done": []
    }
    done: set[str] = set(checkpoint.get("done") or [])
    lookup = SubscriptionLookup(api)
    lookup.preload(list(api.paginate(SUBSCRIPTIONS, {"accession_date": ms(EARLIEST_PLAUSIBLE)})))

    for lower, upper in windows(start, end, window_days):
        for status in GRANTING_STATUSES:
            key = f"{status}:{lower.date().isoformat()}"
            if key in done:
                summary.resumed_windows += 1
                continue
            token = checkpoint.get("page_token") if checkpoint.get("current") == key else None
            params = {"transaction_status": status, "start_date": ms(lower), "end_date": ms(upper) - 1}
            try:
                for items, next_token in api.pages(SALES_HISTORY, params, page_token=token):
                    _import_page(store, items, lookup, summary, dry_run, now)
                    if progress is not None:
                        progress(len(items), None)
                    if not dry_run and store is not None and next_token is not None:
                        checkpoint = {**checkpoint, "current": key, "page_token": next_token}
                        store.set(CHECKPOINTS, run_id, checkpoint)
            except HotmartApiError as error:
                if token is None or error.status != 400:
                    raise
                log.warning("backfill.stale_page_token", window=key)  # redo the window: it is idempotent
                for items, _next in api.pages(SALES_HISTORY, params):
                    _import_page(store, items, lookup, summary, dry_run, now)
            done.add(key)
            if not dry_run and store is not None:
                checkpoint = {"done": sorted(done), "updated_at": format_time(utc_now())}
                store.set(CHECKPOINTS, run_id, checkpoint)

    cancelled = api.paginate(
        SUBSCRIPTIONS,
        {
            "status": list(CANCELLED_SUBSCRIPTION_STATUSES),
            "accession_date": ms(EARLIEST_PLAUSIBLE),
            "cancelation_date": ms(start),
            "end_cancelation_date": ms(min(end, now)),
        },
    )
    for item in cancelled:
        event = subscription_event(item, "subscription_cancellation", source=BACKFILL, now=now)
        if event is None:
            continue
        summary.subscriptions_cancelled += 1
        if not dry_run and store is not None:
            _tally(summary, event.kind, publish_recovered(store, event, BACKFILL))
    if not dry_run and store is not None:
        report = RecoveryReport(BACKFILL, format_time(now), recovered=Counter(summary.published))
        record_run(store, report)
    return summary


def _import_page(
    store: DocumentStore | None,
    items: list[dict[str, Any]],
    lookup: SubscriptionLookup,
    summary: BackfillSummary,
    dry_run: bool,
    now: datetime,
) -> None:
    for item in items:
        summary.sales += 1
        email = (item.get("buyer") or {}).get("email")
        if email:
            summary.buyers.add(str(email).lower())
        product = (item.get("product") or {}).get("id")
        if product is not None:
            summary.products[str(product)] += 1
        if dry_run or store is None:
            continue
        for event in sale_events(item, lookup(item), source=BACKFILL, now=now):
            _tally(summary, event.kind, publish_recovered(store, event, BACKFILL))


def _tally(summary: BackfillSummary, kind: str, published: bool) -> None:
    if published:
        summary.published[kind] += 1
    else:
        summary.already_known += 1


def parse_day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
