"""The webhook endpoint: authenticity, durability before the answer, deduplication, quarantine, limits."""

from __future__ import annotations

import io
import json

from coursebridge.events import Event
from coursebridge.outbox import OUTBOX_KIND as OUTBOX
from ingest.domain.records import unpack_raw
from ingest.service_layer.intake import QUARANTINE, WEBHOOKS


def test_authentic_webhook_is_stored_with_its_outbox_entry_before_the_answer(client, store, post, approval):
    body = approval()
    response = post(body)
    assert response.status_code == 200
    assert response.json == {"status": "accepted", "event_id": body["id"]}
    webhook = store.get(WEBHOOKS, body["id"])
    assert webhook["status"] == "pending"
    assert webhook["hotmart_event"] == "PURCHASE_APPROVED"
    assert json.loads(unpack_raw(webhook["raw"])) == body
    entry = next(
        d.data for d in store.query(OUTBOX) if d.data["event"]["data"]["hotmart"]["event_id"] == body["id"]
    )
    event = Event.from_json(entry["event"])
    assert event.type == "coursebridge.payment.purchase_approved.v1"
    assert entry["ordering_key"] == "HP9000000001"
    assert event.correlation_id == "HP9000000001"
    assert event.data["buyer"]["email"] == "ana.silva@example.com"


def test_resend_is_a_duplicate_and_changes_nothing(client, store, post, approval):
    body = approval()
    assert post(body).json["status"] == "accepted"
    before = store.get(WEBHOOKS, body["id"])
    resend = post(body)
    assert resend.status_code == 200
    assert resend.json["status"] == "duplicate"
    assert store.get(WEBHOOKS, body["id"]) == before
    assert len(store.query(OUTBOX)) == 1


def test_previous_hottok_still_works_during_rotation(client, post, approval, tokens):
    assert post(approval(), hottok=tokens["old_hottok"]).status_code == 200


def test_missing_or_wrong_hottok_is_401_and_stores_nothing(client, store, post, approval):
    for hottok in (None, "", "wrong", "test-hottok-curren", "test-hottok-current "):
        response = post(approval(), hottok=hottok)
        assert response.status_code == 401, hottok
        assert response.json["error"] == "unauthorized"
    assert store.query(WEBHOOKS) == [] and store.query(OUTBOX) == [] and store.query(QUARANTINE) == []


def _post_chunked(client, body: bytes, hottok: str):
    """A body streamed without Content-Length, as a chunked request reaches the app through gunicorn."""
    return client.post(
        "/webhooks/hotmart",
        input_stream=io.BytesIO(body),
        headers={
            "X-HOTMART-HOTTOK": hottok,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_chunked_body_over_one_mebibyte_is_413_and_stores_nothing(client, store, approval, tokens):
    body = approval()
    body["data"]["padding"] = "x" * (1024 * 1024)
    response = _post_chunked(client, json.dumps(body).encode(), tokens["hottok"])
    assert response.status_code == 413
    assert response.json["error"] == "payload_too_large"
    assert store.query(WEBHOOKS) == [] and store.query(OUTBOX) == [] and store.query(QUARANTINE) == []


def test_chunked_body_within_the_limit_is_accepted_whole(client, store, approval, tokens):
    body = approval()
    body["data"]["padding"] = "x" * (1024 * 1024 - 4096)
    encoded = json.dumps(body).encode()
    assert len(encoded) <= 1024 * 1024
    response = _post_chunked(client, encoded, tokens["hottok"])
    assert response.status_code == 200, response.json
    assert response.json["status"] == "accepted"
    assert json.loads(unpack_raw(store.get(WEBHOOKS, body["id"])["raw"])) == body


def test_body_over_one_mebibyte_is_413(client, store, post, approval):
    body = approval()
    body["data"]["padding"] = "x" * (1024 * 1024)
    response = post(body)
    assert response.status_code == 413
    assert store.query(WEBHOOKS) == []


def test_malformed_json_is_quarantined_with_the_reason_and_answered_200(client, store, post, approval):
    response = post(None, raw=b'{"id": "abc", "event": ')
    assert response.status_code == 200
    assert response.json["status"] == "quarantined"
    assert "not valid JSON" in response.json["reason"]
    [record] = store.query(QUARANTINE)
    assert "not valid JSON" in record.data["reason"]
    assert unpack_raw(record.data["raw"]) == b'{"id": "abc", "event": '
    assert store.query(OUTBOX) == []


def test_unnormalisable_shape_is_quarantined_once(client, store, post, approval):
    body = {"id": "e-1", "event": "PURCHASE_APPROVED", "creation_date": 1763726400000, "data": "nope"}
    first = post(body)
    second = post(body)
    assert first.json["status"] == second.json["status"] == "quarantined"
    assert len(store.query(QUARANTINE)) == 1
    assert store.query(WEBHOOKS) == []


def test_unknown_event_names_are_recorded_and_published_as_unrecognised(client, store, post, approval):
    body = approval(event="PURCHASE_TELEPORTED")
    assert post(body).json["status"] == "accepted"
    entry = next(
        d.data for d in store.query(OUTBOX) if d.data["event"]["data"]["hotmart"]["event_id"] == body["id"]
    )
    assert entry["event"]["type"] == "coursebridge.payment.unrecognised.v1"
    assert entry["event"]["data"]["hotmart"]["event"] == "PURCHASE_TELEPORTED"


def test_hottok_inside_the_body_is_not_kept(client, store, post, approval):
    body = approval(hottok="test-hottok-current")
    post(body)
    raw = unpack_raw(store.get(WEBHOOKS, body["id"])["raw"])
    assert b"test-hottok-current" not in raw
    assert json.loads(raw)["hottok"] == "[redacted]"


def test_webhook_status_needs_the_admin_token_and_hides_buyer_data(client, post, approval, tokens):
    body = approval()
    post(body)
    assert client.get(f"/webhooks/hotmart/{body['id']}").status_code == 401
    wrong = {"Authorization": "Bearer no"}
    assert client.get(f"/webhooks/hotmart/{body['id']}", headers=wrong).status_code == 401
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    response = client.get(f"/webhooks/hotmart/{body['id']}", headers=admin)
    assert response.status_code == 200
    assert response.json["status"] == "pending"
    assert "example.com" not in response.get_data(as_text=True).lower()
    missing = client.get("/webhooks/hotmart/nope", headers=admin)
    assert missing.status_code == 404


def test_health_readiness_metrics_and_openapi(client, post, approval, tokens):
    assert client.get("/healthz").json["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    post(approval())
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'coursebridge_ingest_webhooks_total{kind="purchase_approved",outcome="accepted"}' in metrics
    assert "openapi: 3.0.3" in client.get("/openapi.yaml").get_data(as_text=True)


def test_a_normalised_event_that_breaks_its_contract_is_quarantined_not_lost(
    client, store, post, approval, monkeypatch
):
    from ingest.domain import hotmart

    real = hotmart.normalise

    def broken(body, **options):
        event = real(body, **options)
        return type(event)(**{**event.__dict__, "data": {**event.data, "kind": "not-a-kind"}})

    monkeypatch.setattr("ingest.service_layer.intake.normalise", broken)
    response = post(approval())
    assert response.status_code == 200
    assert response.json["status"] == "quarantined"
    assert "breaks its contract" in response.json["reason"]
    assert len(store.query(QUARANTINE)) == 1 and store.query(WEBHOOKS) == []
