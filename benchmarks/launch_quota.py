"""A launch against TalentLMS's hourly quota: N new-student approvals through the bus into TalentLMS.

The enrollment worker (subscribers, the dispatcher under its lease, the relay) runs in this process on the
embedded bus and store; the TalentLMS fake runs over HTTP on 127.0.0.1 with the short window (200 calls /
5 s) and an hourly quota (``--quota`` calls per ``--quota-window`` seconds; 60 compresses an hour). Every
approval is published to the payments topic at once, as a launch does. The run ends when every buyer is
enrolled in TalentLMS and the queue is empty (or at ``--timeout``).

Printed: wall time; calls made by kind; the single-call quota bound (windows of quota the calls need);
429s; dead letters; students missing. Two modes, same machine, same run when ``--mode both``:

- ``single``: batches off (``ENROLLMENT_BATCH_THRESHOLD=0``): two calls per new student;
- ``batch``: the dispatcher groups the backlog into v2 batch calls checked by course rosters.

    make bench-launch ARGS="--students 10000 --quota 2000 --quota-window 3600 --mode batch"
    make bench-launch ARGS="--students 10000 --quota 2000 --quota-window 60 --mode single"
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "enrollment" / "tests"))

COURSE = "7"


def run(mode: str, students: int, quota: int, window: float, timeout: float) -> dict:
    from saga_support import hotmart_body

    from coursebridge.adapters.sqlite_bus import SqliteBus
    from coursebridge.adapters.sqlite_store import SqliteStore
    from coursebridge.config import PlatformSettings
    from coursebridge.events import new_event
    from coursebridge.runtime.logging import configure_logging
    from coursebridge.topology import PAYMENTS, TOPOLOGY
    from enrollment.bootstrap import build_worker
    from enrollment.config import EnrollmentSettings
    from enrollment.domain.mapping import parse_mapping
    from enrollment.service_layer.catalogue import Catalogue
    from enrollment.service_layer.repository import QUEUE
    from ingest.domain.hotmart import normalise
    from talentlms_fake import STATE_EXTENSION, FakeServer, create_app

    configure_logging("bench", "WARNING")
    key = "bench-" + uuid.uuid4().hex
    app = create_app(
        key, rate_limit=200, rate_window_seconds=5.0, hourly_quota=quota, quota_window_seconds=window
    )
    fake = FakeServer(app).start()
    state = app.extensions[STATE_EXTENSION]
    directory = Path(tempfile.mkdtemp(prefix="launch-"))
    bus = SqliteBus(directory / "bus.sqlite3", poll_interval=0.02, min_backoff=0.05, max_backoff=0.5)
    bus.provision(TOPOLOGY)
    store = SqliteStore("enrollment", directory / "enrollment.sqlite3")
    settings = EnrollmentSettings(
        platform=PlatformSettings(data_dir=directory, service_name="enrollment", log_level="WARNING"),
        talentlms_base_url=fake.base_url,
        talentlms_api_key=key,
        hourly_quota=quota,
        quota_window=window,
        batch_threshold=0 if mode == "single" else 50,
        audit_interval=0,
        max_in_flight=20,
    )
    Catalogue(store).put(parse_mapping("4711", {"course_ids": [COURSE]}))
    events = []
    for n in range(students):
        normalised = normalise(
            hotmart_body(transaction=f"HPL{n:06d}", email=f"buyer{n:06d}@example.com", second=n % 3600)
        )
        events.append(
            (
                new_event(
                    normalised.event_type,
                    normalised.data,
                    source="coursebridge/ingest",
                    correlation_id=normalised.ordering_key,
                    event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, normalised.event_id)),
                    time=normalised.occurred_at,
                ),
                normalised.ordering_key,
            )
        )
    worker = build_worker(settings, store=store, bus=bus)
    started = time.monotonic()
    for event, key_ in events:
        bus.publish(PAYMENTS, event, ordering_key=key_)
    worker.start()
    done = False
    while time.monotonic() - started < timeout:
        enrolled = _enrolled(state)
        if enrolled >= students and store.count(QUEUE) == 0:
            done = True
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    worker.stop(30)
    snapshot = state.snapshot()
    dead = _dead_letters(bus)
    enrolled = _enrolled(state)
    calls = snapshot["calls_total"] - snapshot["calls"].get("ratelimit", 0)
    needed_single = 2 * students
    bound_single = math.ceil(needed_single / quota - 1) * window if needed_single > quota else 0.0
    fake.stop()
    store.close()
    bus.close()
    return {
        "mode": mode,
        "students": students,
        "finished": done,
        "wall_seconds": round(elapsed, 1),
        "calls": calls,
        "calls_per_student": round(calls / max(students, 1), 3),
        "calls_by_endpoint": snapshot.get("calls_by_endpoint") or snapshot["calls"],
        "responses_429": snapshot.get("responses_429", snapshot["rejected"].get("rate_limited", 0)),
        "dead_letters": dead,
        "missing": students - enrolled,
        "quota": f"{quota} per {window:g} s",
        "single_call_quota_bound_seconds": bound_single,
    }


def _enrolled(state) -> int:
    with state.lock:  # the fake's server threads change it meanwhile
        return sum(1 for (_user, course) in state.enrollments if course == COURSE)


def _dead_letters(bus) -> int:
    """Messages parked on enrollment's dead-letter topics (held for an operator)."""
    from coursebridge.topology import TOPOLOGY

    names = ("enrollment.payments", "enrollment.subscriptions")
    return sum(bus.backlog(TOPOLOGY.subscription(name).hold_subscription) for name in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--quota", type=int, default=2000)
    parser.add_argument("--quota-window", type=float, default=3600.0)
    parser.add_argument("--mode", choices=("single", "batch", "both"), default="batch")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    modes = ("batch", "single") if args.mode == "both" else (args.mode,)
    results = [run(mode, args.students, args.quota, args.quota_window, args.timeout) for mode in modes]
    for result in results:
        print(json.dumps(result, indent=2))
    if len(results) == 2 and results[0]["wall_seconds"]:
        print(
            f"single / batch wall-time ratio: {results[1]['wall_seconds'] / results[0]['wall_seconds']:.1f}"
        )
    return 0 if all(r["finished"] and r["missing"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
