"""Shapes Hotmart really sends (test sends, production deliveries, legacy 1.0 postbacks), written from the
documented facts in ``payloads/``: each test names the fact it holds the normaliser to."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest

from coursebridge.events import validate_event
from coursebridge.events.contracts import load_schema
from coursebridge.outbox import OUTBOX_KIND as OUTBOX
from ingest.domain.hotmart import _PURCHASE_STATUSES, _SUBSCRIPTION_STATUSES, normalise
from ingest.domain.postback_v1 import normalise_postback, parse_form, postback_body
from ingest.domain.records import unpack_raw
from ingest.entrypoints.quarantine import main as quarantine_cli
from ingest.service_layer.intake import CONFLICTS, QUARANTINE, WEBHOOKS, payment_event

PAYLOADS = Path(__file__).parent / "payloads"
RECEIVED = datetime(2025, 11, 16, 0, 0, 5, tzinfo=UTC)


def load(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text("utf-8"))


def form(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes().strip()


def event_of(name: str, **changes):
    body = load(name)
    for path, value in changes.items():
        target = body
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    normalised = normalise(body, received_at=RECEIVED)
    validate_event(payment_event(normalised))  # every shape stays inside the published contract
    return normalised


@pytest.mark.parametrize("name", sorted(p.name for p in PAYLOADS.glob("*.json")))
def test_every_real_shape_normalises_inside_the_contract(name):
    event = event_of(name)
    assert event.data["source"] == "webhook"
    assert (event.data["purchase"] or {}).get("status") != "unknown"
    assert (event.data["subscription"] or {}).get("status") != "unknown"


# --- subscription or one-off ------------------------------------------------------------------------------


def test_business_model_r_on_a_one_off_sale_is_not_a_subscription():
    data = event_of("prod_one_off_model_r.json").data
    assert data["purchase"]["business_model"] == "R"
    assert data["purchase"]["is_subscription"] is False
    assert data["subscription"] is None


def test_business_model_i_on_a_renewal_is_a_subscription_by_its_subscriber_code():
    data = event_of("prod_renewal_model_i.json").data
    assert data["purchase"]["business_model"] == "I"
    assert data["purchase"]["is_subscription"] is True
    assert data["purchase"]["recurrence_number"] == 7
    assert data["subscription"]["subscriber_code"] == "AB12CD34"


def test_recurrence_without_subscriber_code_is_flagged_not_guessed():
    body = load("prod_renewal_model_i.json")
    del body["data"]["subscription"]
    event = normalise(body, received_at=RECEIVED)
    assert event.data["purchase"]["is_subscription"] is False
    assert "recurrence_without_subscriber_code" in event.anomalies


def test_rest_shaped_is_subscription_is_honoured():
    body = load("prod_one_off_model_r.json")
    body["data"]["purchase"]["is_subscription"] = True
    assert normalise(body, received_at=RECEIVED).data["purchase"]["is_subscription"] is True


# --- statuses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, purchase_status, subscription_status",
    [
        ("prod_purchase_complete_completed.json", "complete", None),
        ("prod_billet_printed_pix.json", "billet_printed", None),
        ("prod_purchase_canceled.json", "canceled", None),
        ("prod_purchase_delayed.json", "delayed", "past_due"),
    ],
)
def test_status_spellings_hotmart_really_sends(name, purchase_status, subscription_status):
    data = event_of(name).data
    assert data["purchase"]["status"] == purchase_status
    assert (data["subscription"] or {}).get("status") == subscription_status


DOCUMENTED_PURCHASE = [
    "APPROVED",
    "BLOCKED",
    "CANCELLED",
    "CANCELED",
    "CHARGEBACK",
    "COMPLETE",
    "COMPLETED",
    "EXPIRED",
    "NO_FUNDS",
    "OVERDUE",
    "PARTIALLY_REFUNDED",
    "PRE_ORDER",
    "PRINTED_BILLET",
    "BILLET_PRINTED",
    "PROCESSING_TRANSACTION",
    "PROTESTED",
    "DISPUTE",
    "REFUNDED",
    "STARTED",
    "UNDER_ANALISYS",
    "UNDER_ANALYSIS",
    "WAITING_PAYMENT",
    "DELAYED",
]
DOCUMENTED_SUBSCRIPTION = [
    "ACTIVE",
    "INACTIVE",
    "DELAYED",
    "OVERDUE",
    "STARTED",
    "EXPIRED",
    "PAST_DUE",
    "CANCELLED_BY_CUSTOMER",
    "CANCELLED_BY_SELLER",
    "CANCELLED_BY_ADMIN",
    "CANCELED_BY_CUSTOMER",
    "CANCELED_BY_VENDOR",
    "CANCELED_BY_ADMIN",
]


def test_no_documented_status_becomes_unknown():
    assert all(status in _PURCHASE_STATUSES for status in DOCUMENTED_PURCHASE)
    assert all(status in _SUBSCRIPTION_STATUSES for status in DOCUMENTED_SUBSCRIPTION)
    schema = load_schema("payment_event.v1")
    purchase_enum = schema["properties"]["purchase"]["oneOf"][0]["properties"]["status"]["enum"]
    subscription_enum = schema["properties"]["subscription"]["oneOf"][0]["properties"]["status"]["enum"]
    assert set(_PURCHASE_STATUSES.values()) <= set(purchase_enum)
    assert set(_SUBSCRIPTION_STATUSES.values()) <= set(subscription_enum)


# --- UPDATE_SUBSCRIPTION_CHARGE_DATE ----------------------------------------------------------------------


def test_charge_date_test_send_in_camel_case_with_the_plan_at_data_level():
    event = event_of("t25_update_charge_date_camel.json")
    subscription = event.data["subscription"]
    assert subscription["plan"] == {"id": "0", "name": "Plan Test"}
    assert subscription["next_charge_at"] == "2025-12-10T00:00:00.000Z"
    assert subscription["charge_day"] == {"old": 3, "new": 10}
    assert subscription["subscriber_code"] == "00000000"
    assert event.occurred_at == datetime(2025, 11, 16, tzinfo=UTC)  # from creationDate


def test_charge_date_production_snake_case_with_the_plan_at_data_level():
    data = event_of("prod_update_charge_date.json").data
    assert data["subscription"]["plan"] == {"id": "726420", "name": "Mensal"}
    assert data["subscription"]["charge_day"] == {"old": 1, "new": 15}
    assert data["subscription"]["next_charge_at"] == "2025-06-15T00:00:00.000Z"
    assert data["product"]["id"] == "5123999"
    assert data["test_event"] is False


# --- keep what is there -----------------------------------------------------------------------------------


def test_amount_without_currency_keeps_its_value():
    purchase = event_of("prod_refund_no_currency.json").data["purchase"]
    assert purchase["price"] == {"value": 997, "currency": None}
    assert purchase["full_price"] == {"value": 1194, "currency": "BRL"}


def test_string_product_ids_are_kept_as_sent():
    assert event_of("prod_club_module_completed_string_id.json").data["product"]["id"] == "5123999"
    club = event_of("prod_club_module_completed_string_id.json", data__product__id="00000")
    assert club.data["product"]["id"] == "00000" and club.test_event


def test_plan_without_id_keeps_its_name():
    data = normalise_postback(parse_form(form("v1_test_approved.form")), RECEIVED).data
    assert data["subscription"]["plan"] == {"id": None, "name": "plano de teste"}


# --- implausible dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize("creation", [946684800000, 1893456000000, "2004-12-31T23:59:59Z"])
def test_implausible_creation_date_is_flagged_and_replaced_by_the_reception_time(creation):
    event = event_of("prod_renewal_model_i.json", creation_date=creation)
    assert "creation_date_implausible" in event.anomalies
    assert event.occurred_at == RECEIVED
    assert event.data["occurred_at"] == "2025-11-16T00:00:05.000Z"


def test_a_day_of_clock_skew_is_plausible():
    event = event_of("prod_renewal_model_i.json", creation_date=int(RECEIVED.timestamp() * 1000) + 3600_000)
    assert event.anomalies == []
    assert event.occurred_at > RECEIVED


def test_implausible_inner_dates_are_nulled_and_flagged_but_future_charges_are_fine():
    event = event_of(
        "prod_renewal_model_i.json",
        data__purchase__approved_date=1000,
        data__purchase__order_date=4102444800000,  # 2100
        data__purchase__date_next_charge=1893456000000,  # 2030: a next charge may be far ahead
    )
    purchase = event.data["purchase"]
    assert purchase["approved_at"] is None and purchase["order_at"] is None
    assert purchase["next_charge_at"] == "2030-01-01T00:00:00.000Z"
    assert set(event.anomalies) == {"approved_date_implausible", "order_date_implausible"}


def test_hotmart_test_body_is_recognised_and_its_old_approval_date_kept():
    event = event_of("t25_purchase_approved_test.json")
    assert event.test_event and event.data["test_event"] is True
    assert event.data["purchase"]["approved_at"] == "2017-11-27T11:49:06.000Z"  # plausible, if old
    assert event.data["subscription"]["subscriber_code"] == "I9OT62C3"


# --- legacy 1.0 postbacks (domain) ------------------------------------------------------------------------


def test_v1_postback_becomes_the_same_domain_event_with_a_deterministic_id():
    fields = parse_form(form("v1_refunded.form"))
    event = normalise_postback(fields, RECEIVED)
    again = normalise_postback(fields, datetime(2026, 1, 1, tzinfo=UTC))
    assert event.event_id == again.event_id == "v1-refunded-HP0500000030"
    assert event.kind == "purchase_refunded"
    assert event.data["source"] == "webhook_v1"
    assert event.data["hotmart"]["version"] == "1.0"
    assert event.data["transaction"] == "HP0500000030"
    assert event.data["product"]["id"] == "5123456"
    assert event.data["buyer"]["email"] == "legacy.buyer@example.com"
    assert event.data["purchase"]["price"] == {"value": 297.0, "currency": "BRL"}
    assert event.data["purchase"]["is_subscription"] is False
    assert event.data["subscription"] is None
    text = json.dumps(event.data)
    assert "52998224725" not in text and "987650001" not in text and "hottok" not in text
    validate_event(payment_event(event))


@pytest.mark.parametrize(
    "status, kind",
    [
        ("approved", "purchase_approved"),
        ("completed", "purchase_complete"),
        ("canceled", "purchase_canceled"),
        ("chargeback", "purchase_chargeback"),
        ("billet_printed", "purchase_billet_printed"),
        ("expired", "purchase_expired"),
        ("dispute", "purchase_protest"),
        ("started", "unrecognised"),
        ("wayting_payment", "unrecognised"),
    ],
)
def test_v1_statuses_map_to_kinds(status, kind):
    fields = {**parse_form(form("v1_refunded.form")), "status": status}
    event = normalise_postback(fields, RECEIVED)
    assert event.kind == kind
    assert event.data["purchase"]["status"] != "unknown"


def test_v1_body_has_no_hottok():
    assert "hottok" not in json.dumps(postback_body(parse_form(form("v1_test_approved.form")), RECEIVED))


# --- through the API --------------------------------------------------------------------------------------


def post_form(client, raw: bytes, hottok_header: str | None = None):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if hottok_header:
        headers["X-HOTMART-HOTTOK"] = hottok_header
    return client.post("/webhooks/hotmart", data=raw, headers=headers)


def with_hottok(raw: bytes, hottok: str) -> bytes:
    fields = parse_form(raw)
    fields["hottok"] = hottok
    return urlencode(fields).encode()


def test_v1_postback_authenticated_by_its_body_hottok_is_accepted_not_401(client, store, tokens):
    raw = with_hottok(form("v1_refunded.form"), tokens["hottok"])
    response = post_form(client, raw)
    assert response.status_code == 200, response.json
    assert response.json == {"status": "accepted", "event_id": "v1-refunded-HP0500000030"}
    assert post_form(client, raw).json["status"] == "duplicate"
    webhook = store.get(WEBHOOKS, "v1-refunded-HP0500000030")
    assert webhook["format"] == "form"
    stored = unpack_raw(webhook["raw"])
    assert tokens["hottok"].encode() not in stored and b"hottok=%5Bredacted%5D" in stored
    [entry] = store.query(OUTBOX)
    assert entry.data["event"]["type"] == "coursebridge.payment.purchase_refunded.v1"


def test_v1_postback_with_a_wrong_body_hottok_is_401(client, store):
    response = post_form(client, with_hottok(form("v1_refunded.form"), "not-it"))
    assert response.status_code == 401
    assert store.query(WEBHOOKS) == []
    assert post_form(client, form("v1_refunded.form").replace(b"hottok=", b"nottok=")).status_code == 401


def test_a_form_hottok_does_not_authenticate_a_json_body(client, store, tokens):
    body = json.dumps(load("prod_update_charge_date.json")).encode()
    raw = b"hottok=" + tokens["hottok"].encode() + b"&" + body
    response = client.post("/webhooks/hotmart", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert store.query(WEBHOOKS) == []


def test_test_sends_are_recorded_not_published(client, store, post, tokens):
    body = load("t25_purchase_approved_test.json")
    response = post(body)
    assert response.json["status"] == "test"
    assert store.get(WEBHOOKS, body["id"])["status"] == "test"
    assert store.query(OUTBOX) == []
    v1 = post_form(client, with_hottok(form("v1_test_approved.form"), tokens["hottok"]))
    assert v1.json["status"] == "test"
    assert store.query(OUTBOX) == []


def test_test_sends_are_published_marked_when_the_operator_opts_in(settings, store, tokens):
    from dataclasses import replace

    from ingest.bootstrap import build_api

    client = build_api(replace(settings, accept_test_events=True)).test_client()
    body = load("t25_purchase_approved_test.json")
    response = client.post("/webhooks/hotmart", json=body, headers={"X-HOTMART-HOTTOK": tokens["hottok"]})
    assert response.json["status"] == "accepted"
    [entry] = store.query(OUTBOX)
    assert entry.data["event"]["data"]["test_event"] is True


def test_same_event_id_with_another_body_is_a_conflict_counted_and_listed(client, store, post, tokens):
    body = load("prod_renewal_model_i.json")
    assert post(body).json["status"] == "accepted"
    reordered = json.loads(json.dumps(body, sort_keys=True))  # same content, other key order
    assert post(reordered).json["status"] == "duplicate"
    changed = json.loads(json.dumps(body))
    changed["data"]["purchase"]["price"]["value"] = 1.0
    response = post(changed)
    assert response.json["status"] == "conflict"
    assert post(changed).json["status"] == "conflict"
    assert len(store.query(CONFLICTS)) == 1
    assert len(store.query(OUTBOX)) == 1  # the first body's event only
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    assert client.get("/admin/conflicts").status_code == 401
    listed = client.get("/admin/conflicts", headers=admin).json["items"]
    assert [item["hotmart_event_id"] for item in listed] == [body["id"]]
    assert listed[0]["first_fingerprint"] != listed[0]["fingerprint"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'outcome="conflict"' in metrics


def test_quarantine_is_listed_inspected_without_personal_data_and_reprocessed(
    client, store, post, tokens, monkeypatch
):
    from ingest.domain.hotmart import NotNormalisable

    def old_normaliser(body, **_options):
        raise NotNormalisable("pretend the old normaliser could not read this shape")

    monkeypatch.setattr("ingest.service_layer.intake.normalise", old_normaliser)
    body = load("prod_renewal_model_i.json")
    assert post(body).json["status"] == "quarantined"
    monkeypatch.undo()  # the upgrade

    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    assert client.get("/admin/quarantine").status_code == 401
    [item] = client.get("/admin/quarantine", headers=admin).json["items"]
    assert item["reason"].startswith("pretend") and item["status"] == "quarantined"
    shown = client.get(f"/admin/quarantine/{item['id']}", headers=admin)
    assert shown.json["body"]["data"]["purchase"]["transaction"] == "HP0500000007"
    assert shown.json["body"]["data"]["buyer"]["email"] == "[personal]"
    assert "member@example.com" not in shown.get_data(as_text=True)

    result = client.post(f"/admin/quarantine/{item['id']}/reprocess", headers=admin)
    assert result.json["status"] == "accepted" and result.json["kind"] == "purchase_approved"
    assert store.get(WEBHOOKS, body["id"])["received_at"] == item["received_at"]
    assert store.get(QUARANTINE, item["id"])["status"] == "reprocessed"
    again = client.post(f"/admin/quarantine/{item['id']}/reprocess", headers=admin)
    assert again.json["status"] == "duplicate"
    assert len(store.query(OUTBOX)) == 1
    assert client.post("/admin/quarantine/nope/reprocess", headers=admin).status_code == 404


def test_quarantine_command_reprocesses_everything_still_waiting(platform, store, post, monkeypatch, capsys):
    from ingest.domain.hotmart import NotNormalisable

    def old_normaliser(body, **_options):
        raise NotNormalisable("old normaliser")

    monkeypatch.setattr("ingest.service_layer.intake.normalise", old_normaliser)
    first, second = load("prod_renewal_model_i.json"), load("prod_purchase_delayed.json")
    post(first), post(second), post(None, raw=b"{not json")
    monkeypatch.undo()
    monkeypatch.setenv("COURSEBRIDGE_BACKEND", "embedded")
    monkeypatch.setenv("COURSEBRIDGE_DATA_DIR", str(platform.data_dir))
    assert quarantine_cli(["reprocess", "--all"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"reprocessed": 3, "outcomes": {"accepted": 2, "quarantined": 1}}
    assert quarantine_cli(["list"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"quarantined": 1}
    assert {store.get(WEBHOOKS, b["id"])["status"] for b in (first, second)} == {"pending"}


def test_last_webhook_time_is_a_gauge_restored_after_a_restart(settings, client, post):
    import time as _time

    from prometheus_client import REGISTRY

    from ingest.bootstrap import build_api
    from ingest.entrypoints.api import WEBHOOK_LAST_RECEIVED

    name = "coursebridge_webhook_last_received_timestamp_seconds"
    before = _time.time()
    post(load("prod_renewal_model_i.json"))
    assert REGISTRY.get_sample_value(name) >= before - 1
    WEBHOOK_LAST_RECEIVED.set(0)  # a new process starts at zero...
    build_api(settings)  # ...and reads the newest stored webhook
    assert REGISTRY.get_sample_value(name) >= before - 1
