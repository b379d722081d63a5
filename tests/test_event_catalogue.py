"""docs/events.md is exactly what the contracts say, and every contract's schema and example are sound."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from coursebridge.events import CONTRACTS, new_event
from coursebridge.events.contracts import load_schema
from coursebridge.topology import TOPOLOGY

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("event_catalogue", ROOT / "tools" / "event_catalogue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_catalogue_is_up_to_date():
    expected = _generator().render()
    actual = (ROOT / "docs" / "events.md").read_text("utf-8")
    assert actual == expected, "docs/events.md is stale: run `uv run python tools/event_catalogue.py`"


def test_catalogue_names_every_topic_subscription_and_type():
    text = (ROOT / "docs" / "events.md").read_text("utf-8")
    for name in [*TOPOLOGY.all_topics(), *(s.name for s in TOPOLOGY.subscriptions), *CONTRACTS]:
        assert f"`{name}`" in text, name


@pytest.mark.parametrize("event_type", sorted(CONTRACTS))
def test_every_contract_has_a_loadable_schema_on_a_known_topic(event_type):
    contract = CONTRACTS[event_type]
    assert contract.topic in TOPOLOGY.topics
    assert load_schema(contract.schema_name)["$schema"].endswith("2020-12/schema")
    if contract.example is not None:
        new_event(event_type, contract.example, source="test")  # raises if the example breaks the schema
