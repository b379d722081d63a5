"""What a consumer does with event types it has no handler for (see ``coursebridge.runtime.consumer``)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from coursebridge.events import Event, new_event
from coursebridge.events.diagnostics import DIAGNOSTIC_PING
from coursebridge.ports import Delivery
from coursebridge.runtime.consumer import EventDispatcher, UnknownEventVersion, type_family
from coursebridge.runtime.metrics import EVENTS_UNKNOWN

DELIVERY = Delivery("svc.pings", "m-1", 1, None)


def unknown(event_type: str) -> Event:
    return Event(type=event_type, source="tests", data={"n": 1}, correlation_id="c")


def counted(event_type: str, outcome: str) -> float:
    return EVENTS_UNKNOWN.labels("svc", "svc.pings", event_type, outcome)._value.get()


def test_a_newer_version_of_a_handled_type_is_refused_and_counted_as_held() -> None:
    handled: list[Event] = []
    dispatcher = EventDispatcher("svc", {DIAGNOSTIC_PING.type: lambda e, d: handled.append(e)})
    v2 = unknown("coursebridge.diagnostic.ping.v2")
    before = counted(v2.type, "held")

    with pytest.raises(UnknownEventVersion, match=r"ping\.v2"):
        dispatcher(v2, DELIVERY)

    assert handled == []
    assert counted(v2.type, "held") == before + 1


def test_an_unknown_type_is_acknowledged_but_recorded_and_counted() -> None:
    dispatcher = EventDispatcher("svc", {DIAGNOSTIC_PING.type: lambda e, d: None})
    stranger = unknown("coursebridge.loyalty.points.v1")
    before = counted(stranger.type, "recorded")

    # Captured at structlog itself: whatever logging another test configured in this process.
    with capture_logs() as logs:
        dispatcher(stranger, DELIVERY)

    assert counted(stranger.type, "recorded") == before + 1
    assert any(e["event"] == "event.unknown_type" and e.get("event_id") == stranger.id for e in logs), logs


def test_a_catalogue_type_this_consumer_does_not_handle_is_simply_ignored() -> None:
    dispatcher = EventDispatcher("svc", {"coursebridge.payment.approved.v1": lambda e, d: None})
    ping = new_event(DIAGNOSTIC_PING.type, {"n": 1}, source="tests")
    before = counted(ping.type, "recorded")

    dispatcher(ping, DELIVERY)

    assert counted(ping.type, "recorded") == before


def test_type_family_strips_the_version_only() -> None:
    assert type_family("coursebridge.payment.approved.v12") == "coursebridge.payment.approved"
    assert type_family("coursebridge.payment.approved") == "coursebridge.payment.approved"
