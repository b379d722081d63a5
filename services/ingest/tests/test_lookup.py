"""Operators find a buyer's webhooks and quarantined bodies by transaction, subscriber code or e-mail."""

from __future__ import annotations

import json

import pytest

from coursebridge import lookup
from ingest.service_layer.intake import QUARANTINE, WEBHOOKS

AUTH = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture(autouse=True)
def lookup_key():
    lookup.configure("test-lookup-key")
    yield
    lookup.configure(None)


def test_webhooks_are_found_by_transaction_and_email_never_stored_in_clear(client, store, post, approval):
    first = approval(transaction="HP1")
    post(first)
    post(approval(transaction="HP2"))
    by_tx = client.get("/admin/lookup?transaction=HP1", headers=AUTH)
    assert by_tx.status_code == 200
    webhooks = by_tx.get_json()["webhooks"]
    assert [(w["hotmart_event_id"], w["transaction"], w["status"]) for w in webhooks] == [
        (first["id"], "HP1", "pending")
    ]
    by_email = client.get("/admin/lookup?email=ana.silva@example.com", headers=AUTH).get_json()
    assert sorted(w["transaction"] for w in by_email["webhooks"]) == ["HP1", "HP2"]
    for doc in store.scan(WEBHOOKS):  # only the (compressed) raw body holds the address, no index field
        assert "ana.silva" not in json.dumps({k: v for k, v in doc.data.items() if k != "raw"}).lower()
        assert doc.data["email_key"].startswith("ek1-")
    body = json.dumps(by_email)
    assert "ana.silva" not in body.lower()


def test_quarantined_bodies_are_found_with_their_reason(client, store, post, approval):
    broken = approval(transaction="HP3")
    del broken["data"]["product"]
    assert post(broken).json["status"] == "quarantined"
    found = client.get("/admin/lookup?transaction=HP3", headers=AUTH).get_json()
    assert found["webhooks"] == []
    [item] = found["quarantine"]
    assert item["status"] == "quarantined" and item["reason"]
    assert store.get(QUARANTINE, item["id"]) is not None
    by_email = client.get("/admin/lookup?email=ANA.SILVA@example.com", headers=AUTH).get_json()
    assert [q["id"] for q in by_email["quarantine"]] == [item["id"]]
    waiting = client.get("/admin/quarantine?status=quarantined", headers=AUTH).get_json()["items"]
    assert [q["id"] for q in waiting] == [item["id"]]


def test_lookup_needs_one_criterion_the_token_and_the_key(client):
    assert client.get("/admin/lookup", headers=AUTH).status_code == 400
    assert client.get("/admin/lookup?transaction=HP1&email=a@b.c", headers=AUTH).status_code == 400
    assert client.get("/admin/lookup?transaction=HP1").status_code == 401
    lookup.configure(None)
    response = client.get("/admin/lookup?email=a@example.com", headers=AUTH)
    assert response.status_code == 503
    assert client.get("/admin/lookup?transaction=HP1", headers=AUTH).status_code == 200
