"""The ``coursebridge`` CLI against the real services (in this process): why, resync, dead letters,
quarantine, products — human output and ``--json``."""

from __future__ import annotations

import json

import pytest
from inproc_stack import ADMIN_TOKEN, approval, wait_for
from typer.testing import CliRunner

from console.entrypoints import cli
from coursebridge.events import new_event
from coursebridge.events.envelope import utc_now


@pytest.fixture
def run(stack, monkeypatch):
    for service in ("ingest", "enrollment", "subscription", "analytics"):
        monkeypatch.setenv(f"{service.upper()}_URL", stack.urls[service])
    monkeypatch.setenv("ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("COURSEBRIDGE_OPERATOR", "cli-test-operator")
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        cli.state.services = None
        result = runner.invoke(cli.app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def test_why_explains_a_parked_purchase_and_products_map_fixes_it(stack, run):
    stack.webhook(approval("HP3001", product_id=4901, email="eva@example.com"))
    wait_for(lambda: "parked" in run("why", "eva@example.com"), "the purchase to be parked")
    parsed = json.loads(run("--json", "why", "HP3001"))
    assert parsed["kind"] == "transaction" and parsed["emails"] == ["eva@example.com"]
    assert parsed["parked"][0]["product_id"] == "4901"
    assert ADMIN_TOKEN not in run("why", "eva@example.com")

    dry = json.loads(run("--json", "products", "dry-run", "4901", "11"))
    assert (dry["students_gaining"], dry["courses"]) == (1, {"11": {"gain": 1, "lose": 0}})
    assert "would gain" in run("products", "dry-run", "4901", "11")
    run("products", "map", "4901", "11")
    wait_for(lambda: stack.lms.enrolled("eva@example.com") == {"11"}, "the enrollment")
    audit = stack.admin("enrollment", "GET", "/admin/products/4901/audit").json()["audit"]
    assert audit[-1]["actor"] == "cli-test-operator"
    courses = json.loads(run("--json", "why", "eva@example.com"))["courses"]
    assert [(c["course_id"], c["status"]) for c in courses] == [("11", "enrolled")]
    assert "4901" in run("products", "list")
    assert json.loads(run("--json", "resync", "eva@example.com"))["queued"] is True


def test_replay_all_handles_every_letter_at_most_once_with_a_summary(stack, run):
    from ingest.domain.hotmart import normalise

    stack.admin("enrollment", "PUT", "/admin/products/4902", json={"course_ids": ["9"]}).raise_for_status()
    good = normalise(approval("HP3002", product_id=4902, email="fia@example.com"))
    poison = normalise(approval("HP3003", product_id=4902, email="gil@example.com"))
    events = [
        new_event(
            good.event_type, good.data, source="coursebridge/ingest", correlation_id="HP3002", time=utc_now()
        ),
        new_event(
            poison.event_type,
            {**poison.data, "buyer": {**poison.data["buyer"], "email": None}},
            source="coursebridge/ingest",
            correlation_id="HP3003",
            time=utc_now(),
        ),
    ]
    for event in events:
        stack.bus.publish("enrollment.payments.dead-letter", event, ordering_key=event.correlation_id)
    wait_for(
        lambda: len(json.loads(run("--json", "deadletters", "list", "--service", "enrollment"))) >= 2,
        "both letters kept by enrollment",
    )
    result = json.loads(run("--json", "deadletters", "replay", "enrollment", "--all"))
    outcomes = sorted(r["outcome"] for r in result["results"])
    assert outcomes.count("replayed") >= 1 and "failed" in outcomes
    assert result["summary"]["letters"] == len(result["results"])
    wait_for(lambda: stack.lms.enrolled("fia@example.com") == {"9"}, "the replayed approval")
    again = json.loads(run("--json", "deadletters", "replay", "--all"))
    assert [r["outcome"] for r in again["results"]] == ["failed"]  # only the poison, once
    held = json.loads(run("--json", "deadletters", "list"))
    [letter] = held
    assert "replay failed" in letter["reason"]
    shown = json.loads(run("--json", "deadletters", "show", "enrollment", letter["id"]))
    assert shown["message"]["data"]["buyer"]["email"] is None
    assert "discarded" in run("deadletters", "discard", "enrollment", letter["id"])
    assert json.loads(run("--json", "deadletters", "list")) == []
    run("deadletters", "replay", code=2)
    run("deadletters", "list", "--service", "ingest", code=2)


def test_quarantine_list_show_and_reprocess(stack, run):
    broken = approval("HP3004", email="hugo@example.com")
    broken["data"]["purchase"]["transaction"] = None
    stack.webhook(broken)
    items = json.loads(run("--json", "quarantine", "list"))
    item = next(i for i in items if "transaction" in (i.get("reason") or ""))
    shown = json.loads(run("--json", "quarantine", "show", item["id"]))
    assert "hugo@example.com" not in json.dumps(shown)
    assert json.loads(run("--json", "quarantine", "reprocess", item["id"]))["status"] == "quarantined"


def test_a_service_that_refuses_or_is_down_exits_1_with_its_message(stack, run, monkeypatch):
    assert "not_found" in run("--json", "quarantine", "show", "nope", code=1) or "no quarantined" in run(
        "quarantine", "show", "nope", code=1
    )
    monkeypatch.setenv("INGEST_URL", "http://127.0.0.1:9")
    assert "unreachable" in run("quarantine", "list", code=1)
