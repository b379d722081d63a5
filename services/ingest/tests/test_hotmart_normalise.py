"""Hotmart webhook body -> normalised payment event (ingest domain)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingest.samples
from coursebridge.events import CONTRACTS, EventContract, InvalidEvent, new_event
from coursebridge.events.contracts import load_schema
from coursebridge.events.envelope import Event
from coursebridge.events.payments import (
    PAYMENT_EVENT_TYPES,
    PAYMENT_KINDS,
    payment_event_type,
    payment_kind,
    register_payment_contracts,
)
from coursebridge.topology import PAYMENTS
from ingest.domain.hotmart import NormalisedEvent, NotNormalisable, normalise

FIXTURE_DIR = Path(ingest.samples.__file__).parent  # the samples `make samples` sends
FIXTURES: dict[str, dict[str, Any]] = {
    path.stem: json.loads(path.read_text("utf-8")) for path in sorted(FIXTURE_DIR.glob("*.json"))
}

EXPECTED_KINDS = {
    "club_first_access": "club_first_access",
    "club_module_completed": "club_module_completed",
    "order_fulfillment": "order_fulfillment",
    "purchase_approved_chargeback_buyer": "purchase_approved",
    "purchase_approved_creationdate": "purchase_approved",
    "purchase_approved_one_off": "purchase_approved",
    "purchase_approved_subscription_first": "purchase_approved",
    "purchase_approved_subscription_renewal": "purchase_approved",
    "purchase_billet_printed": "purchase_billet_printed",
    "purchase_canceled": "purchase_canceled",
    "purchase_chargeback": "purchase_chargeback",
    "purchase_complete": "purchase_complete",
    "purchase_delayed": "purchase_delayed",
    "purchase_expired": "purchase_expired",
    "purchase_out_of_shopping_cart": "purchase_out_of_shopping_cart",
    "purchase_protest": "purchase_protest",
    "purchase_refunded": "purchase_refunded",
    "subscription_cancellation": "subscription_cancellation",
    "switch_plan": "switch_plan",
    "unknown_event": "unrecognised",
    "update_subscription_charge_date": "update_subscription_charge_date",
}

SUBSCRIBER_REASON = (
    "missing subscriber code (data.subscriber.code, data.subscription.subscriber.code "
    "or data.subscription.subscriber_code)"
)


def fixture(name: str) -> dict[str, Any]:
    return copy.deepcopy(FIXTURES[name])


def assert_valid(event: NormalisedEvent) -> Event:
    """The event's data validates against its registered contract and can go on the wire."""
    assert event.event_type == payment_event_type(event.kind)
    assert event.data["kind"] == event.kind
    assert event.data["ordering_key"] == event.ordering_key
    assert event.data["hotmart"]["event_id"] == event.event_id
    assert event.data["hotmart"]["event"] == event.event_name
    assert event.occurred_at.tzinfo is not None
    cloud_event = new_event(
        event.event_type, event.data, source="//ingest/test", subject=event.subject, time=event.occurred_at
    )
    cloud_event.to_wire()  # serialisable as UTF-8 JSON
    return cloud_event


def normalised(name: str, change: Callable[[dict[str, Any]], object] | None = None) -> NormalisedEvent:
    body = fixture(name)
    if change is not None:
        change(body)
    event = normalise(body)
    assert_valid(event)
    return event


def rejection(body: object) -> str:
    with pytest.raises(NotNormalisable) as caught:
        normalise(body)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


# --- fixtures ---------------------------------------------------------------------------------------------


def test_fixture_set_is_the_one_expected():
    assert set(FIXTURES) == set(EXPECTED_KINDS)


def test_every_reference_event_has_a_fixture():
    names = {body["event"] for body in FIXTURES.values()}
    known = {kind.upper() for kind in PAYMENT_KINDS if kind != "unrecognised"}
    assert known <= names
    assert names - known == {"CLUB_LESSON_RATED"}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_fixture_normalises_and_validates(name):
    event = normalised(name)
    assert event.kind == EXPECTED_KINDS[name]
    assert event.event_id == FIXTURES[name]["id"]
    assert event.data["hotmart"]["version"] == "2.0.0"


def test_fixtures_tell_one_coherent_story():
    events = {name: normalise(fixture(name)) for name in FIXTURES}
    subscription = [e for e in events.values() if e.data["product"] and e.data["product"]["id"] == "4711"]
    codes = {e.data["subscription"]["subscriber_code"] for e in subscription if e.data["subscription"]}
    assert codes == {"SUB-A1B2C3"}
    assert events["purchase_approved_subscription_first"].subject == "HP1000000001"
    assert events["purchase_approved_subscription_renewal"].subject == "HP1000000002"
    assert events["purchase_refunded"].subject == "HP2000000001"
    assert events["purchase_refunded"].data["product"]["id"] == "4712"
    assert events["purchase_chargeback"].subject == "HP2000000002"
    assert events["purchase_chargeback"].data["product"]["id"] == "4712"
    for event in events.values():
        for person in (event.data["buyer"], event.data["member"]):
            if person and person["email"]:
                assert person["email"].endswith("@example.com")


# --- field mappings ---------------------------------------------------------------------------------------


def test_first_subscription_charge_maps_every_field():
    event = normalised("purchase_approved_subscription_first")
    data = event.data
    assert event.kind == "purchase_approved"
    assert event.event_type == "coursebridge.payment.purchase_approved.v1"
    assert event.occurred_at == datetime(2025, 3, 3, 12, 0, 5, 123000, tzinfo=UTC)
    assert data["occurred_at"] == data["hotmart"]["created_at"] == "2025-03-03T12:00:05.123Z"
    assert data["transaction"] == "HP1000000001"
    assert data["product"] == {
        "id": "4711",
        "ucode": "0b4711aa-0000-4000-8000-000000004711",
        "name": "CourseBridge Academy Membership",
    }
    assert data["buyer"] == {
        "email": "ana.souza@example.com",
        "name": "Ana Souza",
        "first_name": "Ana",
        "last_name": "Souza",
    }
    assert data["purchase"] == {
        "status": "approved",
        "raw_status": "APPROVED",
        "recurrence_number": 1,
        "approved_at": "2025-03-03T12:00:01.000Z",
        "order_at": "2025-03-03T11:59:30.000Z",
        "next_charge_at": "2025-04-03T12:00:00.000Z",
        "price": {"value": 49.9, "currency": "BRL"},
        "full_price": {"value": 49.9, "currency": "BRL"},
        "offer_code": "mthly01",
        "coupon_code": None,
        "payment_type": "CREDIT_CARD",
        "installments": 1,
        "business_model": "R",
        "is_subscription": True,
        "country_iso": "BR",
    }
    assert data["commissions"] == [
        {"source": "MARKETPLACE", "value": 4.94, "currency": "BRL"},
        {"source": "PRODUCER", "value": 44.96, "currency": "BRL"},
    ]
    assert data["subscription"] == {
        "subscriber_code": "SUB-A1B2C3",
        "subscription_id": None,
        "status": "active",
        "raw_status": "ACTIVE",
        "plan": {"id": "101", "name": "Monthly"},
        "next_charge_at": "2025-04-03T12:00:00.000Z",
        "cancelled_at": None,
    }
    assert data["plan_switch"] is None
    assert data["member"] is None


def test_renewal_keeps_recurrence_number_and_subscription():
    data = normalised("purchase_approved_subscription_renewal").data
    assert data["purchase"]["recurrence_number"] == 2
    assert data["transaction"] == "HP1000000002"
    assert data["subscription"]["subscriber_code"] == "SUB-A1B2C3"
    assert data["subscription"]["plan"] == {"id": "101", "name": "Monthly"}


def test_one_off_purchase_has_no_subscription():
    data = normalised("purchase_approved_one_off").data
    assert data["purchase"]["is_subscription"] is False
    assert data["purchase"]["business_model"] == "I"
    assert data["purchase"]["installments"] == 3
    assert data["purchase"]["coupon_code"] == "WELCOME10"
    assert data["purchase"]["price"] == {"value": 297.0, "currency": "BRL"}
    assert data["subscription"] is None
    assert [c["source"] for c in data["commissions"]] == ["MARKETPLACE", "AFFILIATE", "PRODUCER"]


def test_product_id_is_a_string_whether_hotmart_sends_int_or_str():
    assert normalised("purchase_refunded").data["product"]["id"] == "4712"

    def as_text(body):
        body["data"]["product"]["id"] = " 4712 "

    assert normalised("purchase_refunded", as_text).data["product"]["id"] == "4712"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Ana.Souza@Example.COM", "ana.souza@example.com"),
        ("  MIXED.Case@EXAMPLE.com \n", "mixed.case@example.com"),
        ("", None),
        ("not an email", None),
        (42, None),
        (["a@example.com"], None),
    ],
)
def test_buyer_email_is_lower_cased_and_stripped(raw, expected):
    def set_email(body):
        body["data"]["buyer"]["email"] = raw

    assert normalised("purchase_approved_subscription_first", set_email).data["buyer"]["email"] == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("APPROVED", "approved"),
        ("BLOCKED", "blocked"),
        ("CANCELLED", "canceled"),
        ("CANCELED", "canceled"),
        ("CHARGEBACK", "chargeback"),
        ("COMPLETE", "complete"),
        ("COMPLETED", "complete"),
        ("EXPIRED", "expired"),
        ("NO_FUNDS", "no_funds"),
        ("OVERDUE", "overdue"),
        ("PARTIALLY_REFUNDED", "partially_refunded"),
        ("PRE_ORDER", "pre_order"),
        ("PRINTED_BILLET", "billet_printed"),
        ("BILLET_PRINTED", "billet_printed"),
        ("PROCESSING_TRANSACTION", "processing"),
        ("DISPUTE", "dispute"),
        ("REFUNDED", "refunded"),
        ("STARTED", "started"),
        ("UNDER_ANALISYS", "under_analysis"),
        ("UNDER_ANALYSIS", "under_analysis"),
        ("WAITING_PAYMENT", "waiting_payment"),
        ("approved", "approved"),
        ("SOMETHING_NEW", "unknown"),
    ],
)
def test_purchase_status_spellings_are_normalised(raw, expected):
    def set_status(body):
        body["data"]["purchase"]["status"] = raw

    purchase = normalised("purchase_canceled", set_status).data["purchase"]
    assert purchase["status"] == expected
    assert purchase["raw_status"] == raw


def test_missing_or_non_string_purchase_status_is_null():
    def drop(body):
        del body["data"]["purchase"]["status"]

    def number(body):
        body["data"]["purchase"]["status"] = {"code": 1}

    for change in (drop, number):
        purchase = normalised("purchase_canceled", change).data["purchase"]
        assert purchase["status"] is None
        assert purchase["raw_status"] is None


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("ACTIVE", "active"),
        ("INACTIVE", "inactive"),
        ("DELAYED", "delayed"),
        ("OVERDUE", "overdue"),
        ("STARTED", "started"),
        ("EXPIRED", "expired"),
        ("CANCELLED_BY_CUSTOMER", "canceled_by_customer"),
        ("CANCELED_BY_CUSTOMER", "canceled_by_customer"),
        ("CANCELLED_BY_SELLER", "canceled_by_seller"),
        ("CANCELED_BY_SELLER", "canceled_by_seller"),
        ("CANCELED_BY_VENDOR", "canceled_by_seller"),
        ("CANCELLED_BY_VENDOR", "canceled_by_seller"),
        ("CANCELLED_BY_ADMIN", "canceled_by_admin"),
        ("CANCELED_BY_ADMIN", "canceled_by_admin"),
        ("PAUSED", "unknown"),
    ],
)
@pytest.mark.parametrize(
    "name, place",
    [
        ("purchase_delayed", ("data", "subscription")),
        ("switch_plan", ("data", "subscription")),
        ("update_subscription_charge_date", ("data", "subscription")),
    ],
)
def test_subscription_status_spellings_are_normalised(name, place, raw, expected):
    def set_status(body):
        target = body
        for key in place:
            target = target[key]
        target["status"] = raw

    subscription = normalised(name, set_status).data["subscription"]
    assert subscription["status"] == expected
    assert subscription["raw_status"] == raw


def test_delayed_charge_maps_statuses():
    data = normalised("purchase_delayed").data
    assert data["purchase"]["status"] == "overdue"
    assert data["purchase"]["approved_at"] is None
    assert data["purchase"]["recurrence_number"] == 3
    assert data["subscription"]["status"] == "delayed"
    assert data["subscription"]["plan"] == {"id": "102", "name": "Monthly Premium"}


def test_update_subscription_charge_date_reads_the_iso_date():
    event = normalised("update_subscription_charge_date")
    assert event.kind == "update_subscription_charge_date"
    assert event.data["subscription"] == {
        "subscriber_code": "SUB-A1B2C3",
        "subscription_id": "990001",
        "status": "active",
        "raw_status": "ACTIVE",
        "plan": {"id": "101", "name": "Monthly"},
        "next_charge_at": "2025-05-10T03:00:00.000Z",
        "cancelled_at": None,
        "charge_day": {"old": 3, "new": 10},
    }
    assert event.data["product"]["id"] == "4711"
    assert event.data["buyer"]["email"] == "ana.souza@example.com"
    assert event.data["purchase"] is None


def test_update_subscription_charge_date_alternative_shape():
    """Subscriber under data.subscriber, ISO date without zone directly under data."""

    def move(body):
        subscription = body["data"]["subscription"]
        body["data"]["subscriber"] = subscription.pop("subscriber")
        del subscription["date_next_charge"]
        body["data"]["date_next_charge"] = "2025-05-10T00:00:00"

    event = normalised("update_subscription_charge_date", move)
    assert event.subject == "SUB-A1B2C3"
    assert event.data["subscription"]["subscriber_code"] == "SUB-A1B2C3"
    assert event.data["subscription"]["next_charge_at"] == "2025-05-10T00:00:00.000Z"


def test_switch_plan_maps_plans_by_current_flag():
    event = normalised("switch_plan")
    data = event.data
    assert data["plan_switch"] == {
        "switched_at": "2025-04-20T15:44:58.000Z",
        "new_plan": {"id": "102", "name": "Monthly Premium"},
        "previous_plan": {"id": "101", "name": "Monthly"},
    }
    assert data["subscription"]["plan"] == {"id": "102", "name": "Monthly Premium"}
    assert data["subscription"]["status"] == "active"
    assert data["subscription"]["next_charge_at"] == "2025-05-10T03:00:00.000Z"
    assert data["product"]["id"] == "4711"
    assert data["buyer"]["email"] == "ana.souza@example.com"
    assert event.ordering_key == "subscriber:SUB-A1B2C3"


def test_switch_plan_order_of_plans_does_not_matter():
    def reverse(body):
        body["data"]["plans"].reverse()

    switch = normalised("switch_plan", reverse).data["plan_switch"]
    assert switch["new_plan"]["id"] == "102"
    assert switch["previous_plan"]["id"] == "101"


def test_switch_plan_without_current_flags_leaves_plans_null():
    def unflag(body):
        for plan in body["data"]["plans"]:
            del plan["current"]

    switch = normalised("switch_plan", unflag).data["plan_switch"]
    assert switch["new_plan"] is None
    assert switch["previous_plan"] is None


def test_subscription_cancellation_maps_dates_and_plan():
    event = normalised("subscription_cancellation")
    assert event.data["subscription"] == {
        "subscriber_code": "SUB-A1B2C3",
        "subscription_id": "990001",
        "status": None,
        "raw_status": None,
        "plan": {"id": "102", "name": "Monthly Premium"},
        "next_charge_at": "2025-06-10T03:00:00.000Z",
        "cancelled_at": "2025-05-25T18:19:41.000Z",
    }
    assert event.data["product"] == {"id": "4711", "ucode": None, "name": "CourseBridge Academy Membership"}
    assert event.data["buyer"] == {
        "email": "ana.souza@example.com",
        "name": "Ana Souza",
        "first_name": None,
        "last_name": None,
    }


@pytest.mark.parametrize("name", ["club_first_access", "club_module_completed"])
def test_club_events_map_the_member(name):
    data = normalised(name).data
    assert data["member"] == {"email": "ana.souza@example.com", "name": "Ana Souza"}
    assert data["buyer"] is None
    assert data["product"]["id"] == "4711"
    assert data["transaction"] is None


def test_cart_abandonment_needs_no_transaction():
    event = normalised("purchase_out_of_shopping_cart")
    assert event.data["transaction"] is None
    assert event.data["product"]["id"] == "4712"
    assert event.data["buyer"]["email"] == "eva.costa@example.com"
    assert event.data["purchase"]["offer_code"] == "life297"
    assert event.data["purchase"]["country_iso"] == "BR"
    assert event.ordering_key == f"event:{event.event_id}"


def test_unknown_event_is_kept_as_unrecognised():
    event = normalised("unknown_event")
    assert event.kind == "unrecognised"
    assert event.event_type == "coursebridge.payment.unrecognised.v1"
    assert event.event_name == "CLUB_LESSON_RATED"
    assert event.data["hotmart"]["event"] == "CLUB_LESSON_RATED"
    assert event.data["product"]["id"] == "4711"
    assert event.data["member"]["email"] == "ana.souza@example.com"


def test_unknown_event_with_empty_data_or_purchase_shape():
    bare = {"id": "e-1", "creation_date": 1741003205123, "event": "SOMETHING_NEW", "data": {}}
    event = normalise(bare)
    assert_valid(event)
    assert event.kind == "unrecognised"
    assert event.data["hotmart"]["version"] is None
    assert event.data["product"] is None

    purchase_like = fixture("purchase_refunded")
    purchase_like["event"] = "PURCHASE_REFUND_REQUESTED"
    event = normalise(purchase_like)
    assert_valid(event)
    assert event.kind == "unrecognised"
    assert event.ordering_key == "HP2000000001"
    assert event.data["purchase"]["status"] == "refunded"


def test_event_name_is_matched_case_insensitively_but_kept_raw():
    def lower(body):
        body["event"] = " purchase_refunded "

    event = normalised("purchase_refunded", lower)
    assert event.kind == "purchase_refunded"
    assert event.event_name == "purchase_refunded"


def test_order_fulfillment_is_recorded():
    event = normalised("order_fulfillment")
    assert event.kind == "order_fulfillment"
    assert event.data["transaction"] == "HP3000000001"
    assert event.data["product"]["id"] == "4714"


# --- envelope tolerance -----------------------------------------------------------------------------------


def test_creation_date_camel_case_is_accepted():
    event = normalised("purchase_approved_creationdate")
    assert "creationDate" in FIXTURES["purchase_approved_creationdate"]
    assert event.data["occurred_at"] == "2025-03-14T13:00:00.000Z"


@pytest.mark.parametrize(
    "value",
    [
        1741003205123,
        1741003205123.0,
        "1741003205123",
        " 1741003205123.0 ",
        "2025-03-03T12:00:05.123Z",
        "2025-03-03T12:00:05.123+00:00",
        "2025-03-03T12:00:05.123",
        "2025-03-03 09:00:05.123-03:00",
    ],
)
@pytest.mark.parametrize("key", ["creation_date", "creationDate"])
def test_creation_date_forms(key, value):
    body = fixture("purchase_refunded")
    del body["creation_date"]
    body[key] = value
    event = normalise(body)
    assert_valid(event)
    assert event.occurred_at == datetime(2025, 3, 3, 12, 0, 5, 123000, tzinfo=UTC)
    assert event.data["occurred_at"] == "2025-03-03T12:00:05.123Z"


def test_date_only_iso_string_is_midnight_utc():
    body = fixture("purchase_refunded")
    body["creation_date"] = "2025-03-03"
    assert normalise(body).data["occurred_at"] == "2025-03-03T00:00:00.000Z"


def test_integer_event_id_becomes_a_string():
    body = fixture("purchase_refunded")
    body["id"] = 123456789
    event = normalise(body)
    assert_valid(event)
    assert event.event_id == "123456789"


# --- ordering keys and subjects ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, subject, ordering_key",
    [
        ("purchase_approved_subscription_first", "HP1000000001", "HP1000000001"),
        ("purchase_approved_subscription_renewal", "HP1000000002", "HP1000000002"),
        ("purchase_chargeback", "HP2000000002", "HP2000000002"),
        ("subscription_cancellation", "SUB-A1B2C3", "subscriber:SUB-A1B2C3"),
        ("switch_plan", "SUB-A1B2C3", "subscriber:SUB-A1B2C3"),
        ("update_subscription_charge_date", "SUB-A1B2C3", "subscriber:SUB-A1B2C3"),
        (
            "unknown_event",
            "00000000-feed-4000-8000-000000000031",
            "event:00000000-feed-4000-8000-000000000031",
        ),
        (
            "club_first_access",
            "00000000-feed-4000-8000-000000000008",
            "event:00000000-feed-4000-8000-000000000008",
        ),
    ],
)
def test_subject_and_ordering_key(name, subject, ordering_key):
    event = normalised(name)
    assert event.subject == subject
    assert event.ordering_key == ordering_key
    assert event.data["ordering_key"] == ordering_key


# --- personal data ----------------------------------------------------------------------------------------


def _sensitive_values(body: dict[str, Any]) -> set[str]:
    """Documents, phones, addresses, IPs and secrets present anywhere in a fixture."""
    found: set[str] = set()

    def walk(node: object, key: str = "") -> None:
        if isinstance(node, dict):
            for child_key, child in node.items():
                if child_key == "address" and isinstance(child, dict):
                    found.update(
                        str(child[k])
                        for k in ("address", "number", "zipcode", "complement", "neighborhood", "city")
                        if k in child
                    )
                walk(child, child_key)
        elif isinstance(node, list):
            for child in node:
                walk(child, key)
        elif isinstance(node, str | int) and key in {
            "document",
            "checkout_phone",
            "phone",
            "cell",
            "buyer_ip",
            "hottok",
            "zipcode",
            "address",
        }:
            found.add(str(node))

    walk(body)
    return {value for value in found if len(value) >= 4}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_no_document_phone_or_address_in_output(name):
    body = fixture(name)
    event = normalise(body)
    serialised = json.dumps(event.data, ensure_ascii=False) + repr(event)
    for value in _sensitive_values(body):
        assert value not in serialised, f"{value!r} leaked into the output of {name}"
    for key in ("document", "phone", "checkout_phone", "address", "zipcode", "buyer_ip", "hottok"):
        assert f'"{key}"' not in serialised


def test_fixtures_do_carry_personal_data_to_drop():
    values = _sensitive_values(FIXTURES["purchase_approved_subscription_first"])
    assert {"52998224725", "11987650001", "Rua das Acácias", "01310100", "11222333000181"} <= values
    assert "987650001" in _sensitive_values(FIXTURES["subscription_cancellation"])


# --- rejections -------------------------------------------------------------------------------------------


def _set(path: tuple[str, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _drop(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


LONG_ID = "X" * 257


@pytest.mark.parametrize(
    "name, change, reason",
    [
        # envelope
        ("purchase_refunded", _drop(("id",)), "missing event id"),
        ("purchase_refunded", _set(("id",), None), "missing event id"),
        ("purchase_refunded", _set(("id",), ""), "missing event id"),
        ("purchase_refunded", _set(("id",), "   "), "missing event id"),
        ("purchase_refunded", _set(("id",), ["e-1"]), "event id must be a string or an integer, got array"),
        ("purchase_refunded", _set(("id",), True), "event id must be a string or an integer, got boolean"),
        ("purchase_refunded", _set(("id",), 1.5), "event id must be a string or an integer, got number"),
        ("purchase_refunded", _set(("id",), LONG_ID), "event id is longer than 256 characters"),
        ("purchase_refunded", _drop(("event",)), "missing event name"),
        ("purchase_refunded", _set(("event",), " "), "missing event name"),
        ("purchase_refunded", _set(("event",), 7), "event name must be a string, got number"),
        ("purchase_refunded", _set(("event",), LONG_ID), "event name is longer than 256 characters"),
        ("purchase_refunded", _drop(("creation_date",)), "missing creation_date"),
        ("purchase_refunded", _set(("creation_date",), "abc"), "creation_date is not a date: 'abc'"),
        (
            "purchase_approved_creationdate",
            _set(("creationDate",), "abc"),
            "creationDate is not a date: 'abc'",
        ),
        ("purchase_refunded", _set(("creation_date",), ""), "creation_date is not a date: ''"),
        ("purchase_refunded", _set(("creation_date",), True), "creation_date is not a date: true"),
        ("purchase_refunded", _set(("creation_date",), 10**20), f"creation_date is not a date: {10**20}"),
        ("purchase_refunded", _set(("creation_date",), float("nan")), "creation_date is not a date: nan"),
        (
            "purchase_refunded",
            _set(("creation_date",), "2025-13-45"),
            "creation_date is not a date: '2025-13-45'",
        ),
        (
            "purchase_refunded",
            _set(("creation_date",), {"ms": 1}),
            "creation_date is not a date: a value of type object",
        ),
        (
            "purchase_refunded",
            _set(("creation_date",), "9" * 100),
            "creation_date is not a date: '" + "9" * 60 + "'...",
        ),
        ("purchase_refunded", _drop(("data",)), "missing data"),
        ("purchase_refunded", _set(("data",), None), "missing data"),
        ("purchase_refunded", _set(("data",), []), "data must be an object, got array"),
        ("unknown_event", _set(("data",), "text"), "data must be an object, got string"),
        # purchase identity
        ("purchase_refunded", _drop(("data", "purchase")), "missing data.purchase"),
        (
            "purchase_refunded",
            _set(("data", "purchase"), "HP1"),
            "data.purchase must be an object, got string",
        ),
        (
            "purchase_refunded",
            _drop(("data", "purchase", "transaction")),
            "missing data.purchase.transaction",
        ),
        (
            "purchase_delayed",
            _set(("data", "purchase", "transaction"), ""),
            "missing data.purchase.transaction",
        ),
        (
            "purchase_approved_subscription_first",
            _set(("data", "purchase", "transaction"), 1000000001),
            "data.purchase.transaction must be a string, got number",
        ),
        (
            "purchase_chargeback",
            _set(("data", "purchase", "transaction"), LONG_ID),
            "data.purchase.transaction is longer than 256 characters",
        ),
        ("purchase_refunded", _drop(("data", "product")), "missing data.product"),
        ("purchase_refunded", _set(("data", "product"), [4712]), "data.product must be an object, got array"),
        ("purchase_refunded", _drop(("data", "product", "id")), "missing data.product.id"),
        ("purchase_refunded", _set(("data", "product", "id"), " "), "missing data.product.id"),
        (
            "purchase_refunded",
            _set(("data", "product", "id"), {"id": 4712}),
            "data.product.id must be a string or an integer, got object",
        ),
        (
            "purchase_refunded",
            _set(("data", "product", "id"), 47.12),
            "data.product.id must be a string or an integer, got number",
        ),
        (
            "purchase_refunded",
            _set(("data", "product", "id"), 10**300),
            "data.product.id is longer than 256 characters",
        ),
        ("purchase_out_of_shopping_cart", _drop(("data", "product")), "missing data.product"),
        # subscription identity
        ("subscription_cancellation", _drop(("data", "subscriber")), SUBSCRIBER_REASON),
        ("subscription_cancellation", _set(("data", "subscriber", "code"), ""), SUBSCRIBER_REASON),
        (
            "subscription_cancellation",
            _set(("data", "subscriber", "code"), ["SUB"]),
            "data.subscriber.code must be a string, got array",
        ),
        ("switch_plan", _drop(("data", "subscription", "subscriber_code")), SUBSCRIBER_REASON),
        (
            "switch_plan",
            _set(("data", "subscription", "subscriber_code"), 42),
            "data.subscription.subscriber_code must be a string, got number",
        ),
        ("switch_plan", _drop(("data", "subscription")), SUBSCRIBER_REASON),
        ("update_subscription_charge_date", _drop(("data", "subscription", "subscriber")), SUBSCRIBER_REASON),
        (
            "update_subscription_charge_date",
            _set(("data", "subscription", "subscriber", "code"), LONG_ID),
            "data.subscription.subscriber.code is longer than 256 characters",
        ),
        # over-long identifiers are rejected wherever they are
        (
            "purchase_approved_subscription_first",
            _set(("data", "subscription", "subscriber", "code"), LONG_ID),
            "data.subscription.subscriber.code is longer than 256 characters",
        ),
        (
            "subscription_cancellation",
            _set(("data", "subscription", "plan", "id"), LONG_ID),
            "plan id is longer than 256 characters",
        ),
        (
            "unknown_event",
            _set(("data", "product", "id"), LONG_ID),
            "data.product.id is longer than 256 characters",
        ),
    ],
)
def test_rejection_reasons(name, change, reason):
    body = fixture(name)
    change(body)
    assert rejection(body) == reason


@pytest.mark.parametrize(
    "body, reason",
    [
        (None, "body must be a JSON object, got null"),
        ([], "body must be a JSON object, got array"),
        ("{}", "body must be a JSON object, got string"),
        (42, "body must be a JSON object, got number"),
        (b"{}", "body must be a JSON object, got bytes"),
        ({}, "missing event id"),
    ],
)
def test_rejects_bodies_that_are_not_objects(body, reason):
    assert rejection(body) == reason


def test_not_normalisable_is_a_value_error():
    assert issubclass(NotNormalisable, ValueError)
    assert NotNormalisable("why").reason == "why"


# --- tolerated junk ---------------------------------------------------------------------------------------


def test_wrong_types_deep_inside_are_nulled_or_coerced():
    def junk(body):
        purchase = body["data"]["purchase"]
        purchase["price"]["value"] = "abc"
        purchase["full_price"] = {"value": "97.50", "currency_value": "brl"}
        purchase["recurrence_number"] = "x"
        purchase["payment"] = {"type": ["CARD"], "installments_number": "3"}
        purchase["approved_date"] = "yesterday"
        purchase["order_date"] = "1741003205123"
        purchase["date_next_charge"] = 1e300
        purchase["offer"] = "life297"
        purchase["checkout_country"] = None
        body["data"]["buyer"]["name"] = {"first": "Ana"}
        body["data"]["buyer"]["email"] = None
        body["data"]["commissions"] = [
            {"source": "PRODUCER", "value": "12.5", "currency_value": None},
            {"source": "MARKETPLACE", "value": "n/a"},
            "junk",
            {"value": 1},
        ]
        body["data"]["subscription"]["plan"] = {"id": [101], "name": "Monthly"}
        body["version"] = 2

    data = normalised("purchase_approved_subscription_first", junk).data
    purchase = data["purchase"]
    assert purchase["price"] is None
    assert purchase["full_price"] == {"value": 97.5, "currency": "BRL"}
    assert purchase["recurrence_number"] is None
    assert purchase["payment_type"] is None
    assert purchase["installments"] == 3
    assert purchase["approved_at"] is None
    assert purchase["order_at"] == "2025-03-03T12:00:05.123Z"
    assert purchase["next_charge_at"] is None
    assert purchase["offer_code"] is None
    assert purchase["country_iso"] is None
    assert data["buyer"]["name"] is None
    assert data["buyer"]["email"] is None
    assert data["commissions"] == [{"source": "PRODUCER", "value": 12.5, "currency": None}]
    assert data["subscription"]["plan"] == {"id": None, "name": "Monthly"}  # the name is kept
    assert data["hotmart"]["version"] == "2"


def test_recurrence_number_as_numeric_string_is_coerced():
    data = normalised(
        "purchase_approved_subscription_renewal", _set(("data", "purchase", "recurrence_number"), "2")
    ).data
    assert data["purchase"]["recurrence_number"] == 2


def test_huge_free_text_is_truncated():
    def huge(body):
        body["data"]["buyer"]["name"] = "N" * 100_000
        body["data"]["product"]["name"] = "é" * 501

    data = normalised("purchase_approved_one_off", huge).data
    assert data["buyer"]["name"] == "N" * 500
    assert data["product"]["name"] == "é" * 500


def test_lone_surrogates_and_unicode_survive_serialisation():
    def odd(body):
        body["data"]["buyer"]["name"] = "Jo\ud800ão 🎓"
        body["data"]["product"]["name"] = "Planilhas ✓ \u0000"

    data = normalised("purchase_approved_one_off", odd).data
    assert data["buyer"]["name"] == "Jo?ão 🎓"


def test_data_is_not_shared_with_the_input():
    body = fixture("purchase_refunded")
    event = normalise(body)
    body["data"]["product"]["name"] = "changed"
    assert event.data["product"]["name"] == "Spreadsheet Mastery (lifetime access)"


# --- contracts and schema ---------------------------------------------------------------------------------


def test_payment_contracts_are_registered_once_per_kind():
    assert len(PAYMENT_KINDS) == 17
    assert len(PAYMENT_EVENT_TYPES) == len(set(PAYMENT_EVENT_TYPES)) == 17
    for kind, event_type in zip(PAYMENT_KINDS, PAYMENT_EVENT_TYPES, strict=True):
        assert event_type == f"coursebridge.payment.{kind}.v1"
        assert payment_kind(event_type) == kind
        contract = CONTRACTS[event_type]
        assert isinstance(contract, EventContract)
        assert contract.topic == PAYMENTS == "payments"
        assert contract.schema_name == "payment_event.v1"
        assert contract.producer == "ingest"
        assert contract.description
        assert contract.dataschema == "urn:coursebridge:schema:payment_event.v1"
    assert register_payment_contracts() == register_payment_contracts()
    kinds = set(load_schema("payment_event.v1")["properties"]["kind"]["enum"])
    assert kinds == set(PAYMENT_KINDS)


@pytest.mark.parametrize("bad", ["purchase", "PURCHASE_APPROVED", ""])
def test_payment_event_type_rejects_unknown_kinds(bad):
    with pytest.raises(ValueError):
        payment_event_type(bad)


@pytest.mark.parametrize(
    "bad", ["coursebridge.payment.nope.v1", "coursebridge.payment.purchase_approved.v2", "x"]
)
def test_payment_kind_rejects_other_types(bad):
    with pytest.raises(ValueError):
        payment_kind(bad)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda data: data.update(typo=1),
        lambda data: data["hotmart"].update(hottok="x"),
        lambda data: data["buyer"].update(document="52998224725"),
        lambda data: data["buyer"].update(phone="11987650001"),
        lambda data: data["purchase"]["price"].update(cents=4990),
        lambda data: data["subscription"]["plan"].update(price=1),
        lambda data: data["commissions"][0].update(extra=True),
        lambda data: data.pop("member"),
        lambda data: data["purchase"].pop("coupon_code"),
        lambda data: data.update(kind="purchase_approve"),
        lambda data: data.update(occurred_at="2025-03-03T12:00:05Z"),
        lambda data: data["product"].update(id=4711),
        lambda data: data["purchase"].update(status="APPROVED"),
        lambda data: data["subscription"].update(status="cancelled_by_customer"),
    ],
)
def test_schema_rejects_producer_typos(spoil):
    event = normalise(fixture("purchase_approved_subscription_first"))
    data = copy.deepcopy(event.data)
    spoil(data)
    with pytest.raises(InvalidEvent):
        new_event(event.event_type, data, source="//ingest/test")


# --- property: arbitrary mutations of the fixtures --------------------------------------------------------

SPECIAL_STRINGS = [
    "",
    " ",
    "x" * 300,
    "é" * 600,
    "Z" * 20_000,
    "\ud800",
    "💥" * 10,
    "٣٣٣",
    "1741003205123",
    "-1",
    "1e999",
    "NaN",
    "2025-03-03",
    "2025-03-03T12:00:00+14:00",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+01:00",
    "null",
    "CANCELLED_BY_VENDOR",
    "true",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.text(st.characters(codec=None, categories=["Cs", "Lo", "So", "Nd"]), max_size=8),
    st.sampled_from(SPECIAL_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.sampled_from(["id", "code", "email", "current"])),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


def _paths(node: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            paths.extend(_paths(child, (*prefix, key)))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            paths.extend(_paths(child, (*prefix, index)))
    return paths


def _flip(value: object) -> object:
    """The same information in another JSON type: 4711 <-> "4711", "2" -> 2."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 30:
        return int(value)
    return value


@st.composite
def mutated_bodies(draw: st.DrawFn) -> object:
    body: object = fixture(draw(st.sampled_from(sorted(FIXTURES))))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        paths = _paths(body)
        deep = [path for path in paths if len(path) >= 2]  # mostly mutate inside data, not the envelope
        path = draw(st.sampled_from(deep if deep and draw(st.integers(0, 4)) else paths))
        operation = draw(st.sampled_from(["drop", "replace", "flip", "huge", "junk_key", "wrap"]))
        if not path:
            if operation == "replace":
                body = draw(json_values)
            continue
        parent: Any = body
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if operation == "drop":
            del parent[key]
        elif operation == "replace":
            parent[key] = draw(json_values)
        elif operation == "flip":
            parent[key] = _flip(parent[key])
        elif operation == "huge":
            parent[key] = draw(st.sampled_from(["Q" * 100_000, "ü" * 5_000, "7" * 5_000, "\ud83d" * 300]))
        elif operation == "junk_key":
            if isinstance(parent[key], dict):
                parent[key][draw(st.text(max_size=10))] = draw(json_values)
        else:  # wrap
            parent[key] = draw(st.sampled_from([[parent[key]], {"value": parent[key]}]))
    return body


def _check(body: object) -> None:
    try:
        event = normalise(body)
    except NotNormalisable as error:
        assert isinstance(error.reason, str)
        assert error.reason
        assert len(error.reason) < 400
        return
    assert isinstance(event, NormalisedEvent)
    assert_valid(event)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(mutated_bodies())
def test_property_mutated_fixtures_normalise_or_are_rejected_cleanly(body):
    _check(body)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_property_arbitrary_json_bodies_normalise_or_are_rejected_cleanly(body):
    _check(body)


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(sorted(FIXTURES)),
    key=st.sampled_from(["creation_date", "creationDate"]),
    value=json_values,
)
def test_property_any_creation_date_is_parsed_or_rejected(name, key, value):
    body = fixture(name)
    body.pop("creation_date", None)
    body.pop("creationDate", None)
    body[key] = value
    _check(body)
