"""Versioned contracts: which event types exist, on which topic, and the JSON schema of their data.

Every event is validated when it is published and again when it is received, so a producer bug shows
up as a clear error at the producer and a consumer never acts on data it does not understand. A new
version of a type's data is a new type name (``...v2``) published alongside the old one until every
consumer has moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator

from coursebridge.events.envelope import Event

SCHEMA_URN_PREFIX = "urn:coursebridge:schema:"


class InvalidEvent(ValueError):
    """An event whose type is unknown or whose data breaks its contract."""


@dataclass(frozen=True)
class EventContract:
    type: str
    topic: str
    schema_name: str
    producer: str
    description: str
    ordering_key: str = "none"
    example: dict[str, Any] | None = None

    @property
    def dataschema(self) -> str:
        return SCHEMA_URN_PREFIX + self.schema_name

    def validator(self) -> jsonschema_rs.Draft202012Validator:
        return _validator(self.schema_name)


@cache
def load_schema(schema_name: str) -> dict[str, Any]:
    text = resources.files("coursebridge.events.schemas").joinpath(f"{schema_name}.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(schema_name: str) -> jsonschema_rs.Draft202012Validator:
    """Compiled once per schema; jsonschema-rs validates in microseconds, so every publish and every
    receipt can afford it."""
    schema = load_schema(schema_name)
    Draft202012Validator.check_schema(schema)  # the reference implementation vets the schema itself
    return jsonschema_rs.Draft202012Validator(schema)


CONTRACTS: dict[str, EventContract] = {}


def register_contract(contract: EventContract) -> EventContract:
    existing = CONTRACTS.get(contract.type)
    if existing is not None and existing != contract:
        raise ValueError(f"event type {contract.type} is already registered differently")
    CONTRACTS[contract.type] = contract
    return contract


def contract_for(event_type: str) -> EventContract:
    try:
        return CONTRACTS[event_type]
    except KeyError:
        raise InvalidEvent(f"unknown event type {event_type!r}") from None


def validate_received(event: Event) -> EventContract | None:
    """Validate on receipt: a known type must keep its contract; an unknown type passes through untouched.

    An unknown type is a newer producer ahead of this consumer, not a broken message: the consumer's
    dispatcher acknowledges and ignores it instead of dead-lettering it.
    """
    if event.type not in CONTRACTS:
        return None
    return validate_event(event)


def validate_event(event: Event) -> EventContract:
    """Raise ``InvalidEvent`` naming the first broken rule; return the contract when the event is sound."""
    contract = contract_for(event.type)
    if event.dataschema is not None and event.dataschema != contract.dataschema:
        raise InvalidEvent(
            f"{event.type}: dataschema {event.dataschema!r} does not match contract {contract.dataschema!r}"
        )
    validator = contract.validator()
    if validator.is_valid(event.data):
        return contract
    errors = sorted(validator.iter_errors(event.data), key=lambda e: [str(p) for p in e.instance_path])
    first = errors[0]
    where = "/".join(str(part) for part in first.instance_path) or "(root)"
    raise InvalidEvent(f"{event.type}: data at {where}: {first.message}")
