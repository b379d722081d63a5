"""What a consumer does with event types it has no handler for (see ``coursebridge.runtime.consumer``)."""

from __future__ import annotations

import pytest

from coursebridge.events import Event, new_event
from coursebridge.events.diagnostics import DIAGNOSTIC_PING
from coursebridge.ports import Delivery
from coursebridge.runtime import consumer
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


class _Recorder:
    """Stands in for a structlog logger: keeps every call as an event dict."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def _log(self, level: str, event: str, **fields: object) -> None:
        self.entries.append({"event": event, "level": level, **fields})

    def debug(self, event: str, **fields: object) -> None:
        self._log("debug", event, **fields)

    def info(self, event: str, **fields: object) -> None:
        self._log("info", event, **fields)

    def warning(self, event: str, **fields: object) -> None:
        self._log("warning", event, **fields)

    def error(self, event: str, **fields: object) -> None:
        self._log("error", event, **fields)


def test_an_unknown_type_is_acknowledged_but_recorded_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    dispatcher = EventDispatcher("svc", {DIAGNOSTIC_PING.type: lambda e, d: None})
    stranger = unknown("coursebridge.loyalty.points.v1")
    before = counted(stranger.type, "recorded")

    # The consumer's own logger, swapped for a recorder: what is logged does not depend on how other tests
    # in this process configured logging.
    recorder = _Recorder()
    monkeypatch.setattr(consumer, "log", recorder)
    dispatcher(stranger, DELIVERY)
    logs = recorder.entries

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
