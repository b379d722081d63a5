"""The whole end-to-end flow through real processes, then every process's own output is scanned: no buyer
e-mail, document or phone from the samples, no hottok, admin token or TalentLMS API key may appear.

The secrets are set through the environment (no launcher banner is involved). Run at INFO (the default)
and at DEBUG, so the most talkative code paths are scanned too.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
from stack_harness import ADMIN_TOKEN, HOTTOK, LMS_API_KEY, Stack, lms_pairs, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def samples() -> dict[str, dict]:
    folder = resources.files("ingest.samples")
    return {p.name: json.loads(p.read_text("utf-8")) for p in folder.iterdir() if p.name.endswith(".json")}


def personal_data(bodies: list[dict]) -> set[str]:
    """Buyer e-mails, documents and phones, as they appear in the samples (and phone with its code)."""
    found: set[str] = set()

    def walk(value, key: str = "") -> None:
        if isinstance(value, dict):
            phone_code = value.get("checkout_phone_code")
            phone = value.get("checkout_phone") or value.get("phone")
            if phone_code and phone:
                found.add(f"{phone_code}{phone}")
            for child_key, child in value.items():
                walk(child, child_key)
        elif isinstance(value, list):
            for child in value:
                walk(child, key)
        elif isinstance(value, str | int) and key in ("email", "document", "checkout_phone", "phone"):
            text = str(value)
            if len(text) >= 6 and not text.startswith("support@"):
                found.add(text)
                if key == "email":
                    found.add(text.lower())

    for body in bodies:
        walk(body.get("data", {}).get("buyer", {}), "")
        walk(body.get("data", {}).get("subscription", {}).get("subscriber", {}), "")
    return found


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])  # at DEBUG gunicorn logs request paths too
def test_a_full_run_logs_no_personal_data_and_no_secret(tmp_path: Path, level: str) -> None:
    bodies = samples()
    needles = personal_data(list(bodies.values()))
    assert any("@" in n for n in needles) and any(n.isdigit() for n in needles), needles
    secrets = {"hottok": HOTTOK, "admin token": ADMIN_TOKEN, "TalentLMS API key": LMS_API_KEY}
    stack = Stack(tmp_path, backend="embedded", subscription=True, extra_env={"LOG_LEVEL": level})
    with stack:
        stack.map_products({"4711": ["7", "9"], "4712": ["12"]})
        for _name, body in sorted(bodies.items()):
            for _ in range(2):
                stack.post_webhook(body)
        ids = [b["id"] for b in bodies.values() if isinstance(b.get("id"), str)]
        wait_for(
            lambda: all((stack.webhook_status(i) or {}).get("status") == "published" for i in ids),
            "every sample to be published",
            60,
        )
        wait_for(lambda: lms_pairs(stack.fake_state()), "the LMS to see an enrollment", 60)
        # Read every operator view once, so their code paths log too.
        for body in bodies.values():
            email = body.get("data", {}).get("buyer", {}).get("email")
            if email:
                stack.student(email)
        requests.get(
            f"{stack.urls['subscription']}/subscriptions/SUB-A1B2C3", headers=stack.admin, timeout=10
        )
        requests.post(f"{stack.urls['subscription']}/tasks/sweep", headers=stack.admin, timeout=10)
        stack.parked()
    leaks: list[str] = []
    for name, child in stack.children.items():
        text = child.log_path.read_text(errors="replace")
        assert len(text) > 0, f"{name} wrote nothing: is it running?"
        lower = text.lower()
        for needle in needles:
            if needle.lower() in lower:
                leaks.append(f"{name}: buyer data {needle!r}")
        for what, secret in secrets.items():
            if secret in text:
                leaks.append(f"{name}: the {what}")
    assert leaks == [], "\n".join(leaks)
