"""Publish what Hotmart's REST API knows and no webhook delivered: reconciliation and backfill.

Each recovered fact goes through the same outbox as a webhook's, in one transaction with its ``facts``
document and the subscriber's status register, so a fact is published once whichever source saw it first
and a late webhook is recorded as ``recovered_earlier`` instead of being published again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from coursebridge.events.envelope import format_time
from coursebridge.outbox import Outbox
from coursebridge.ports import DocumentStore, Transaction
from ingest.adapters.hotmart_api import SALES_HISTORY, SUBSCRIPTIONS, HotmartApi
from ingest.domain.facts import CANCELLED, OVERDUE, implied_fact_keys
from ingest.domain.hotmart import EARLIEST_PLAUSIBLE, NormalisedEvent
from ingest.domain.records import document_id
from ingest.domain.rest import (
    CANCELLED_SUBSCRIPTION_STATUSES,
    GRANTING_STATUSES,
    OVERDUE_SUBSCRIPTION_STATUSES,
    REVOKING_STATUSES,
    ms,
    sale_events,
    subscription_event,
)
from ingest.service_layer.intake import FACTS, payment_event, read_fact, write_fact

log = structlog.get_logger(__name__)

RECONCILIATION = "reconciliation"
RUNS = "reconciliation_runs"
TOTALS_DOC = "totals"


@dataclass
class RecoveryReport:
    source: str
    started_at: str
    examined: int = 0
    recovered: Counter[str] = field(default_factory=Counter)
    already_known: int = 0
    status_mismatches: list[dict[str, Any]] = field(default_factory=list)
    api_calls: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "started_at": self.started_at,
            "examined": self.examined,
            "recovered": dict(self.recovered),
            "recovered_total": sum(self.recovered.values()),
            "already_known": self.already_known,
            "status_mismatches": self.status_mismatches[:100],
            "api_calls": self.api_calls,
        }


def publish_recovered(store: DocumentStore, event: NormalisedEvent, source: str) -> bool:
    """Stage ``event`` unless its fact (or, for a subscription status, the same status) is known already."""
    cloud_event = payment_event(event)
    outbox = Outbox(store)
    status_kind = {"subscription_cancellation": CANCELLED, "purchase_delayed": OVERDUE}.get(event.kind)

    implied = implied_fact_keys(event.kind, event.data.get("transaction"))

    def work(tx: Transaction) -> bool:
        reads = read_fact(tx, cloud_event.data)
        implied_absent = [key for key in implied if tx.get(FACTS, document_id(key)) is None]
        if reads.fact is not None:
            return False  # a webhook (or an earlier recovery) published this fact already
        told = (reads.register or {}).get("status")
        if status_kind == CANCELLED and told == CANCELLED:
            return False  # the webhooks said so already
        if status_kind == OVERDUE and reads.code is not None and told in (OVERDUE, CANCELLED):
            return False
        write_fact(tx, outbox, reads, cloud_event, source, event.ordering_key)
        for key in implied_absent:  # known through the recovered fact, never published on their own
            tx.create(
                FACTS,
                document_id(key),
                {"key": key, "source": source, "implied_by": reads.key, "event_id": None, "published": False},
            )
        return True

    return store.transaction(work)


class SubscriptionLookup:
    """The subscription of a subscription sale (the sales history does not carry the subscriber code):
    one per buyer per product, looked up once per run."""

    def __init__(self, api: HotmartApi) -> None:
        self._api = api
        self._cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    def preload(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            email = (item.get("subscriber") or {}).get("email")
            product = (item.get("product") or {}).get("id")
            if email and product is not None:
                self._cache.setdefault((email, str(product)), item)

    def __call__(self, sale: dict[str, Any]) -> dict[str, Any] | None:
        if (sale.get("purchase") or {}).get("is_subscription") is not True:
            return None
        email = (sale.get("buyer") or {}).get("email")
        product = (sale.get("product") or {}).get("id")
        if not email or product is None:
            return None
        key = (email, str(product))
        if key not in self._cache:
            found = list(
                self._api.paginate(
                    SUBSCRIPTIONS,
                    {
                        "subscriber_email": email,
                        "product_id": product,
                        "accession_date": ms(EARLIEST_PLAUSIBLE),
                    },
                    page_size=10,
                )
            )
            self._cache[key] = found[0] if found else None
        return self._cache[key]


def reconcile(
    store: DocumentStore,
    api: HotmartApi,
    now: datetime,
    *,
    lookback: timedelta = timedelta(hours=72),
    refund_lookback: timedelta = timedelta(days=60),
) -> RecoveryReport:
    """One reconciliation round: sales of every relevant status in the sliding window, and subscriptions
    Hotmart reports cancelled or overdue, each turned into the event a webhook would have produced."""
    report = RecoveryReport(RECONCILIATION, format_time(now))
    calls_before = api.calls
    lookup = SubscriptionLookup(api)
    subscriptions = _subscription_mismatches(api, now, lookback)
    lookup.preload([item for item, _kind in subscriptions])

    windows = [(status, lookback) for status in GRANTING_STATUSES]
    windows += [(status, max(lookback, refund_lookback)) for status in REVOKING_STATUSES]
    windows += [("OVERDUE", lookback)]
    for status, window in windows:
        # One status per call: the default filter is APPROVED+COMPLETE only, and whether Hotmart takes
        # several transaction_status values at once is not documented.
        params = {"transaction_status": status, "start_date": ms(now - window), "end_date": ms(now)}
        for item in api.paginate(SALES_HISTORY, params):
            report.examined += 1
            for event in sale_events(item, lookup(item), source=RECONCILIATION, now=now):
                _count(report, event, publish_recovered(store, event, RECONCILIATION))

    for item, kind in subscriptions:
        report.examined += 1
        event = subscription_event(item, kind, source=RECONCILIATION, now=now)
        if event is None:
            continue
        published = publish_recovered(store, event, RECONCILIATION)
        if published:
            report.status_mismatches.append(
                {
                    "subscriber_code": item.get("subscriber_code"),
                    "hotmart_status": item.get("status"),
                    "kind": kind,
                }
            )
        _count(report, event, published)

    report.api_calls = api.calls - calls_before
    record_run(store, report)
    return report


def _subscription_mismatches(
    api: HotmartApi, now: datetime, lookback: timedelta
) -> list[tuple[dict[str, Any], str]]:
    earliest = ms(EARLIEST_PLAUSIBLE)  # the listing otherwise defaults to accessions of the last 30 days
    cancelled = api.paginate(
        SUBSCRIPTIONS,
        {
            "status": list(CANCELLED_SUBSCRIPTION_STATUSES),
            "accession_date": earliest,
            "cancelation_date": ms(now - lookback),
            "end_cancelation_date": ms(now),
        },
    )
    found = [(item, "subscription_cancellation") for item in cancelled]
    overdue = api.paginate(
        SUBSCRIPTIONS, {"status": list(OVERDUE_SUBSCRIPTION_STATUSES), "accession_date": earliest}
    )
    found += [(item, "purchase_delayed") for item in overdue]
    return found


def _count(report: RecoveryReport, event: NormalisedEvent, published: bool) -> None:
    if published:
        report.recovered[event.kind] += 1
        log.info("recovery.published", source=report.source, kind=event.kind, subject=event.subject)
    else:
        report.already_known += 1


def record_run(store: DocumentStore, report: RecoveryReport) -> None:
    """Keep the run and add its recoveries to the durable totals the metrics are read from."""
    summary = report.to_json()

    def work(tx: Transaction) -> None:
        totals = tx.get(RUNS, TOTALS_DOC) or {"recovered": {}, "runs": 0}
        recovered = dict(totals.get("recovered") or {})
        for kind, count in report.recovered.items():
            recovered[kind] = int(recovered.get(kind, 0)) + count
        tx.set(
            RUNS,
            TOTALS_DOC,
            {
                "recovered": recovered,
                "runs": int(totals.get("runs") or 0) + 1,
                "last_run_at": report.started_at,
                "last_recovered": summary["recovered_total"],
                "source": report.source,
            },
        )
        tx.set(RUNS, "run-" + report.started_at, summary)

    store.transaction(work)
