"""Backfill against the fake Hotmart: imports every current buyer, idempotent, resumable, dry run."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coursebridge.backends import open_store
from coursebridge.config import PlatformSettings
from coursebridge.outbox import OUTBOX_KIND
from hotmart_fake import STATE_EXTENSION, Sale, Subscription, create_app
from hotmart_fake.server import FakeHotmartServer
from ingest.adapters.hotmart_api import HotmartApi, HotmartApiError, HotmartApiSettings
from ingest.entrypoints.backfill import dry_run_report
from ingest.service_layer.backfill import CHECKPOINTS, backfill

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2025, 4, 1, tzinfo=UTC)
DAY_MS = 86_400_000


@pytest.fixture
def hotmart():
    app = create_app("cid", "csecret")
    state = app.extensions[STATE_EXTENSION]
    base = int(START.timestamp() * 1000)
    for n in range(120):
        code = f"SUB{n:04d}" if n % 3 == 0 else None
        sale = Sale(
            f"HPB{n:06d}",
            4711 if code else 4712,
            f"buyer{n}@example.com",
            order_date=base + (n % 89) * DAY_MS,
            subscriber_code=code,
            recurrency_number=1 if code else None,
        )
        if n % 10 == 1:
            sale.set_status("REFUNDED")
        elif n % 10 == 2:
            sale.set_status("COMPLETE")
        state.add_sale(sale)
        if code:
            state.add_subscription(Subscription(code, 4711, f"buyer{n}@example.com", accession_date=base + n))
    state.subscriptions["SUB0003"].cancel(base + 50 * DAY_MS)
    with FakeHotmartServer(app) as server:
        yield server, state


@pytest.fixture
def store(tmp_path: Path):
    store = open_store(
        PlatformSettings(backend="embedded", data_dir=tmp_path, service_name="ingest"), "ingest"
    )
    yield store
    store.close()


def client(server) -> HotmartApi:
    basic = base64.b64encode(b"cid:csecret").decode()
    return HotmartApi(
        HotmartApiSettings("cid", "csecret", basic, api_base_url=server.url, auth_url=server.token_url)
    )


def outbox_kinds(store) -> list[str]:
    return sorted(d.data["event"]["data"]["kind"] for d in store.query(OUTBOX_KIND))


def test_backfill_imports_every_current_buyer_once(hotmart, store):
    server, _state = hotmart
    summary = backfill(store, client(server), START, END, window_days=31)
    granted = 120 - 12  # refunded sales grant nothing
    assert summary.sales == granted and len(summary.buyers) == granted
    assert summary.published == {
        "purchase_approved": granted,
        "purchase_complete": 12,
        "subscription_cancellation": 1,
    }
    kinds = outbox_kinds(store)
    assert kinds.count("purchase_approved") == granted
    subscription_sale = next(
        d.data["event"]["data"]
        for d in store.query(OUTBOX_KIND)
        if d.data["event"]["data"]["transaction"] == "HPB000000"
    )
    assert subscription_sale["subscription"]["subscriber_code"] == "SUB0000"
    assert subscription_sale["source"] == "backfill"

    again = backfill(store, client(server), START, END, window_days=31)
    assert sum(again.published.values()) == 0 and again.resumed_windows == 6  # 3 windows x 2 statuses
    assert outbox_kinds(store) == kinds


def test_an_interrupted_backfill_resumes_where_it_stopped(hotmart, store):
    server, _state = hotmart
    api = client(server)
    real_get, calls = api.get, [0]

    def flaky(path, params):
        calls[0] += 1
        if "sales/history" in path and calls[0] == 6:
            raise HotmartApiError("connection lost")
        return real_get(path, params)

    api.get = flaky  # type: ignore[method-assign]
    with pytest.raises(HotmartApiError):
        backfill(store, api, START, END, window_days=31)
    assert store.get(CHECKPOINTS, "2025-01-01_2025-04-01")["done"]
    partial = len(store.query(OUTBOX_KIND))
    resumed = backfill(store, client(server), START, END, window_days=31)
    assert resumed.resumed_windows > 0
    assert len(store.query(OUTBOX_KIND)) > partial
    assert outbox_kinds(store).count("purchase_approved") == 108


def test_dry_run_writes_nothing_and_summarises(hotmart, store):
    server, _state = hotmart
    summary = backfill(None, client(server), START, END, dry_run=True)
    assert store.query(OUTBOX_KIND) == []
    report = dry_run_report(summary, {"4711": ["101"], "9999": ["7"]})
    assert report["buyers"] == 108 and report["products"] == {"4711": 36, "4712": 72}
    assert report["products_unmapped"] == ["4712"]
    assert report["courses_to_grant"] == {"101": 36}
    assert "unavailable" in dry_run_report(summary, None)["mapping"]


def test_without_its_checkpoints_a_second_backfill_still_publishes_nothing(hotmart, store):
    server, _state = hotmart
    backfill(store, client(server), START, END, window_days=31)
    before = outbox_kinds(store)
    store.delete(CHECKPOINTS, "2025-01-01_2025-04-01")
    again = backfill(store, client(server), START, END, window_days=15)  # other windows, same facts
    assert again.resumed_windows == 0 and sum(again.published.values()) == 0
    assert again.already_known == 108 + 12 + 1
    assert outbox_kinds(store) == before
