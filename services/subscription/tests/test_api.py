"""The HTTP API: bearer checks, the sweep task and the read API."""

from __future__ import annotations

import json

import pytest

from coursebridge import lookup
from coursebridge.events.envelope import format_time
from subscription.bootstrap import build_api
from subscription.entrypoints import sweep as sweep_cli
from subscription.service_layer.accesses import ACCESSES, handle_payment
from subscription.testing import day, payment_data

ADMIN_TOKEN = "test-admin-token"  # as in conftest
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def client(settings, store, clock):
    return build_api(settings, store=store, clock=clock).test_client()


def pay(store, kind, d, **kw):
    if "next" in kw:
        kw["next_charge_at"] = format_time(day(kw.pop("next")))
    handle_payment(store, payment_data(kind, format_time(day(d)), **kw), now=day(d))


@pytest.mark.parametrize(("method", "path"), [("post", "/tasks/sweep"), ("get", "/subscriptions/SUB-1")])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}])
def test_operator_routes_need_the_bearer_token(client, method, path, headers):
    response = getattr(client, method)(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_sweep_task_answers_the_report(client, store, clock):
    pay(store, "purchase_approved", 0, next=30)
    pay(store, "purchase_delayed", 30)
    clock.now = day(45)
    response = client.post("/tasks/sweep", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json() == {
        "now": format_time(day(45)),
        "examined": 1,
        "changed": 1,
        "counts": {"suspended": 1},
        "access_ids": {"suspended": ["sub:SUB-1:4711"]},
        "reevaluated": 0,
    }
    assert client.post("/tasks/sweep", headers=AUTH).get_json()["changed"] == 0


def test_read_api_shows_state_paid_through_plan_and_history(client, store, clock):
    pay(store, "purchase_approved", 0, next=30, transaction="HP1")
    pay(store, "purchase_delayed", 30)
    pay(store, "purchase_approved", 0, code="SUB-1", product="4800", next=60)
    clock.now = day(40)
    client.post("/tasks/sweep", headers=AUTH)
    response = client.get("/subscriptions/SUB-1", headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()
    assert body["subscriber_code"] == "SUB-1"
    by_id = {a["access_id"]: a for a in body["accesses"]}
    access = by_id["sub:SUB-1:4711"]
    assert access["state"] == "suspended"
    assert access["paid_through"] == format_time(day(30))
    assert access["grace_until"] == format_time(day(37))
    assert access["plan"] == {"id": "101", "name": "Monthly"}
    assert [(h["from"], h["to"]) for h in access["history"]] == [
        ("pending", "active"),
        ("active", "past_due"),
        ("past_due", "suspended"),
    ]
    assert by_id["sub:SUB-1:4800"]["state"] == "active"


def test_read_api_404_for_an_unknown_subscriber(client):
    assert client.get("/subscriptions/NOPE", headers=AUTH).status_code == 404


def test_sweep_cli_prints_the_report_and_exits_0(platform, store, monkeypatch, capsys):
    pay(store, "purchase_approved", 0, next=30)
    pay(store, "subscription_cancellation", 5, next=30)
    monkeypatch.setenv("COURSEBRIDGE_BACKEND", "embedded")
    monkeypatch.setenv("COURSEBRIDGE_DATA_DIR", str(platform.data_dir))
    assert sweep_cli.main([]) == 0  # real clock: long after 2025-01-31
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # log lines come first
    assert report["counts"] == {"expired": 1}


def test_the_sweep_cli_keeps_the_email_key_of_the_access_it_expires(platform, store, monkeypatch, capsys):
    """Operators still find an expired buyer by e-mail: the sweep rewrites the access with its hash."""
    lookup.configure("test-lookup-key")
    try:
        pay(store, "purchase_approved", 0, next=30)
        pay(store, "subscription_cancellation", 5, next=30)
        (doc,) = store.query(ACCESSES, [])
        key = doc.data["email_key"]
        assert key.startswith("ek1-")
        lookup.configure(None)  # a fresh process: only the environment gives it the key
        monkeypatch.setenv("COURSEBRIDGE_BACKEND", "embedded")
        monkeypatch.setenv("COURSEBRIDGE_DATA_DIR", str(platform.data_dir))
        monkeypatch.setenv("LOOKUP_HASH_KEY", "test-lookup-key")
        assert sweep_cli.main([]) == 0
        (doc,) = store.query(ACCESSES, [])
        assert doc.data["state"] == "expired" and doc.data.get("email_key") == key
    finally:
        lookup.configure(None)
