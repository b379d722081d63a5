"""The one envelope every message on every topic carries.

CloudEvents 1.0 attributes plus a ``correlationid`` extension that follows one purchase through every
service. On Pub/Sub it uses the CloudEvents *binary* binding: attributes travel as ``ce-*`` message
attributes and the JSON data is the message body, so Pub/Sub tooling (filters, DLQ inspection) can read
the attributes without parsing the body.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
_ATTRIBUTE_PREFIX = "ce-"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, the form every CourseBridge timestamp takes."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {text!r}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class WireMessage:
    """What a bus adapter actually moves: body bytes plus string attributes."""

    data: bytes
    attributes: dict[str, str]


@dataclass(frozen=True)
class Event:
    """A CloudEvent with CourseBridge's correlation id; ``data`` is validated against its contract."""

    type: str
    source: str
    data: dict[str, Any]
    correlation_id: str
    subject: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=utc_now)
    dataschema: str | None = None
    datacontenttype: str = JSON_CONTENT_TYPE
    specversion: str = SPEC_VERSION

    def with_data(self, data: dict[str, Any]) -> Event:
        return replace(self, data=data)

    def attributes(self) -> dict[str, str]:
        attrs = {
            "specversion": self.specversion,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": format_time(self.time),
            "correlationid": self.correlation_id,
        }
        if self.subject is not None:
            attrs["subject"] = self.subject
        if self.dataschema is not None:
            attrs["dataschema"] = self.dataschema
        return attrs

    def to_wire(self) -> WireMessage:
        attributes = {_ATTRIBUTE_PREFIX + key: value for key, value in self.attributes().items()}
        attributes["content-type"] = self.datacontenttype
        body = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
        return WireMessage(data=body.encode("utf-8"), attributes=attributes)

    @classmethod
    def from_wire(cls, message: WireMessage) -> Event:
        """Rebuild an event; raises ``ValueError`` with the reason when the message is not one of ours."""
        attrs = {
            key[len(_ATTRIBUTE_PREFIX) :]: value
            for key, value in message.attributes.items()
            if key.startswith(_ATTRIBUTE_PREFIX)
        }
        missing = [name for name in ("specversion", "id", "type", "source", "time") if not attrs.get(name)]
        if missing:
            raise ValueError(f"not a CloudEvent: missing attribute(s) {', '.join(missing)}")
        if attrs["specversion"] != SPEC_VERSION:
            raise ValueError(f"unsupported CloudEvents specversion {attrs['specversion']!r}")
        content_type = message.attributes.get("content-type", JSON_CONTENT_TYPE)
        if content_type != JSON_CONTENT_TYPE:
            raise ValueError(f"unsupported content type {content_type!r}")
        try:
            data = json.loads(message.data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"event body is not JSON: {error}") from error
        if not isinstance(data, dict):
            raise ValueError("event body must be a JSON object")
        return cls(
            type=attrs["type"],
            source=attrs["source"],
            data=data,
            correlation_id=attrs.get("correlationid") or attrs["id"],
            subject=attrs.get("subject"),
            id=attrs["id"],
            time=parse_time(attrs["time"]),
            dataschema=attrs.get("dataschema"),
            datacontenttype=content_type,
        )

    def to_json(self) -> dict[str, Any]:
        """Structured-mode CloudEvent (attributes and data in one JSON object), for storage and docs."""
        return {**self.attributes(), "datacontenttype": self.datacontenttype, "data": self.data}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Event:
        return cls(
            type=document["type"],
            source=document["source"],
            data=document["data"],
            correlation_id=document.get("correlationid") or document["id"],
            subject=document.get("subject"),
            id=document["id"],
            time=parse_time(document["time"]),
            dataschema=document.get("dataschema"),
            datacontenttype=document.get("datacontenttype", JSON_CONTENT_TYPE),
        )


def new_event(
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    correlation_id: str | None = None,
    subject: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> Event:
    """Build an event of a registered type, with its dataschema filled in and its data validated."""
    from coursebridge.events.contracts import contract_for, validate_event

    contract = contract_for(event_type)
    event_id = event_id or str(uuid.uuid4())
    event = Event(
        type=event_type,
        source=source,
        data=data,
        correlation_id=correlation_id or event_id,
        subject=subject,
        id=event_id,
        time=time or utc_now(),
        dataschema=contract.dataschema,
    )
    validate_event(event)
    return event
