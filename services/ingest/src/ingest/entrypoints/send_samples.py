"""Send the sample Hotmart webhooks to a running stack and show what happened to each.

``make samples`` after ``make run``: every sample is sent twice (the second answer is ``duplicate``), then
the command waits until the relay has published each one to the payments topic. ``--fresh`` gives the
samples new event ids so a second run is accepted again instead of deduplicated.

The samples tell a three-month story. They are re-dated relative to today (whole days, so times of day
stay): the latest sample lands on yesterday, so a fresh ``make run`` shows them in the dashboard's
default 90-day range. ``--as-recorded`` sends the dates written in the files.

Their TalentLMS activity comes the real way: ``make run``'s fake TalentLMS lets enrolled users sign in and
complete courses by themselves, and enrollment's learning poller reads its timeline (every 90 s locally).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
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


DAY_MS = 86_400_000
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def _creation_ms(body: dict[str, Any]) -> int:
    return int(body.get("creation_date") or body.get("creationDate") or 0)


def _shift(value: Any, days: int, dated: bool = False) -> Any:
    """``value`` with every date moved by ``days``: epoch milliseconds and ISO strings under date keys."""
    if isinstance(value, dict):
        return {k: _shift(v, days, "date" in k.lower()) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, days, dated) for v in value]
    if not dated or isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value >= 10**12:
        return type(value)(value + days * DAY_MS)
    if isinstance(value, str) and value.isdigit() and len(value) >= 13:
        return str(int(value) + days * DAY_MS)
    if isinstance(value, str) and _ISO.match(value):
        moved = datetime.fromisoformat(value.replace("Z", "+00:00")) + timedelta(days=days)
        spec = "milliseconds" if "." in value else "seconds"
        return moved.isoformat(timespec=spec).replace("+00:00", "Z")
    return value


def redate(samples: list[tuple[str, dict[str, Any]]], today: date) -> list[tuple[str, dict[str, Any]]]:
    """The samples moved by whole days so that the latest one happened yesterday (never in the future)."""
    latest = max(_creation_ms(body) for _, body in samples)
    latest_day = datetime.fromtimestamp(latest / 1000, UTC).date()
    days = (today - timedelta(days=1) - latest_day).days
    return [(name, _shift(body, days)) for name, body in samples]


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
    parser.add_argument(
        "--as-recorded", action="store_true", help="send the dates written in the files (2025)"
    )
    args = parser.parse_args(argv)
    hottok = args.hottok or _dev_secret("HOTMART_HOTTOK")
    admin_token = args.admin_token or _dev_secret("ADMIN_TOKEN")
    if not hottok:
        print("no hottok: set HOTMART_HOTTOK or pass --hottok", file=sys.stderr)
        return 2

    session = requests.Session()
    sent: list[str] = []
    samples = load_samples()
    if not args.as_recorded:
        samples = redate(samples, datetime.now(UTC).date())
    for name, body in samples:
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
