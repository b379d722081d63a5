"""Operators' lookups and dead letters: accesses by buyer e-mail (keyed hash), held letters replayed once."""

from __future__ import annotations

import time

import pytest

from coursebridge import lookup
from coursebridge.deadletters import DEADLETTERS, deadletter_id
from coursebridge.events import new_event
from coursebridge.events.envelope import format_time
from coursebridge.events.payments import payment_event_type
from subscription.bootstrap import build_api, build_worker
from subscription.service_layer.accesses import ACCESSES, handle_payment
from subscription.testing import day, payment_data

AUTH = {"Authorization": "Bearer test-admin-token", "X-CourseBridge-Actor": "maria@school.example"}


@pytest.fixture(autouse=True)
def lookup_key():
    lookup.configure("test-lookup-key")
    yield
    lookup.configure(None)


@pytest.fixture
def client(settings, store, clock):
    return build_api(settings, store=store, clock=clock).test_client()


def test_accesses_are_found_by_email_through_a_keyed_hash_only(client, store):
    handle_payment(store, payment_data("purchase_approved", format_time(day(0))), now=day(0))
    doc = store.get(ACCESSES, "sub:SUB-1:4711")
    assert doc["email_key"].startswith("ek1-") and "ana" not in doc["email_key"]
    found = client.get("/admin/accesses?email=ANA.Souza@example.com", headers=AUTH).get_json()
    assert [a["access_id"] for a in found["accesses"]] == ["sub:SUB-1:4711"]
    by_code = client.get("/admin/accesses?subscriber_code=SUB-1", headers=AUTH).get_json()
    assert by_code == found
    assert client.get("/admin/accesses?email=other@example.com", headers=AUTH).get_json() == {"accesses": []}
    assert client.get("/admin/accesses", headers=AUTH).status_code == 400
    lookup.configure(None)
    response = client.get("/admin/accesses?email=ana.souza@example.com", headers=AUTH)
    assert response.status_code == 503 and "LOOKUP_HASH_KEY" in response.get_json()["message"]


def _approval(code: str):
    data = payment_data("purchase_approved", format_time(day(0)), code=code)
    return new_event(
        payment_event_type("purchase_approved"), data, source="coursebridge/ingest", correlation_id=code
    )


def test_dead_letters_are_kept_listed_replayed_once_and_discarded(settings, store, bus, client, clock):
    worker = build_worker(settings, store=store, bus=bus, clock=clock)
    worker.start()
    try:
        good, other = _approval("SUB-7"), _approval("SUB-8")
        for event in (good, other):
            bus.publish("subscription.payments.dead-letter", event, ordering_key=event.correlation_id)
        ids = [deadletter_id("subscription.payments", e.id) for e in (good, other)]
        deadline = time.monotonic() + 20
        while not all(store.get(DEADLETTERS, i) for i in ids):
            assert time.monotonic() < deadline, "the keeper did not store the dead letters"
            time.sleep(0.05)
    finally:
        worker.stop(10)
    listed = client.get("/admin/deadletters", headers=AUTH).get_json()["items"]
    assert sorted(item["id"] for item in listed) == sorted(ids)
    shown = client.get(f"/admin/deadletters/{ids[0]}", headers=AUTH).get_json()
    assert shown["message"]["data"]["buyer"]["email"] == "an***@example.com"
    assert shown["subscriber_code"] == "SUB-7"

    assert store.get(ACCESSES, "sub:SUB-7:4711") is None
    replayed = client.post(f"/admin/deadletters/{ids[0]}/replay", headers=AUTH)
    assert replayed.status_code == 200 and replayed.get_json()["outcome"] == "replayed"
    assert store.get(ACCESSES, "sub:SUB-7:4711")["state"] == "active"
    assert client.post(f"/admin/deadletters/{ids[0]}/replay", headers=AUTH).status_code == 409

    assert client.post(f"/admin/deadletters/{ids[1]}/discard", headers=AUTH).status_code == 200
    discarded = store.get(DEADLETTERS, ids[1])
    assert discarded["status"] == "discarded" and discarded["actor"] == "maria@school.example"
    assert store.get(ACCESSES, "sub:SUB-8:4711") is None
    assert client.get("/admin/deadletters", headers=AUTH).get_json()["items"] == []
    everything = client.get("/admin/deadletters?status=all", headers=AUTH).get_json()["items"]
    assert {item["status"] for item in everything} == {"replayed", "discarded"}
    assert client.post("/admin/deadletters/nope/replay", headers=AUTH).status_code == 404
    assert client.get("/admin/deadletters", headers={}).status_code == 401
