"""Send the sample Hotmart webhooks to a running stack and show what happened to each.

``make samples`` after ``make run``: every sample is sent twice (the second answer is ``duplicate``), then
the command waits until the relay has published each one to the payments topic. ``--fresh`` gives the
samples new event ids so a second run is accepted again instead of deduplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import requests

HOTTOK_HEADER = "X-HOTMART-HOTTOK"


def load_samples() -> list[tuple[str, dict[str, Any]]]:
    """The samples in the order Hotmart would have sent them (by creation date), so the story reads."""
    folder = resources.files("ingest.samples")
    samples = [
        (p.name, json.loads(p.read_text("utf-8"))) for p in folder.iterdir() if p.name.endswith(".json")
    ]
    return sorted(samples, key=lambda s: (s[1].get("creation_date") or s[1].get("creationDate") or 0, s[0]))


def _dev_secret(name: str) -> str | None:
    if os.environ.get(name):
        return os.environ[name]
    path = Path(os.environ.get("COURSEBRIDGE_DATA_DIR", ".data")) / "dev-secrets.env"
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == name:
                return value
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('INGEST_PORT', '8080')}")
    parser.add_argument(
        "--hottok", default=None, help="default: HOTMART_HOTTOK or the local stack's dev value"
    )
    parser.add_argument(
        "--admin-token", default=None, help="default: ADMIN_TOKEN or the local stack's dev value"
    )
    parser.add_argument("--fresh", action="store_true", help="new event ids, so nothing is a duplicate")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for publication")
    args = parser.parse_args(argv)
    hottok = args.hottok or _dev_secret("HOTMART_HOTTOK")
    admin_token = args.admin_token or _dev_secret("ADMIN_TOKEN")
    if not hottok:
        print("no hottok: set HOTMART_HOTTOK or pass --hottok", file=sys.stderr)
        return 2

    session = requests.Session()
    sent: list[str] = []
    for name, body in load_samples():
        if args.fresh:
            body["id"] = str(uuid.uuid4())
        answers = []
        for _ in range(2):
            response = session.post(
                f"{args.url}/webhooks/hotmart", json=body, headers={HOTTOK_HEADER: hottok}, timeout=10
            )
            answers.append(f"{response.status_code} {response.json().get('status', response.text[:60])}")
        print(f"{name:<45} {body.get('event', '?'):<32} {' / '.join(answers)}")
        if response.ok and response.json().get("status") != "quarantined":
            sent.append(str(body["id"]))

    if not admin_token:
        print("(no ADMIN_TOKEN: not checking publication)")
        return 0
    deadline = time.monotonic() + args.wait
    pending = set(sent)
    while pending and time.monotonic() < deadline:
        for event_id in sorted(pending):
            response = session.get(
                f"{args.url}/webhooks/hotmart/{event_id}",
                headers={"Authorization": f"Bearer {admin_token}"},
                timeout=10,
            )
            if response.ok and response.json().get("status") == "published":
                record = response.json()
                print(f"published  {record['hotmart_event']:<32} message {record['message_id']}")
                pending.discard(event_id)
        time.sleep(0.3)
    if pending:
        print(f"{len(pending)} sample(s) not published within {args.wait:.0f}s: is the relay running?")
        return 1
    print(f"all {len(sent)} samples accepted, deduplicated on resend and published to the payments topic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
