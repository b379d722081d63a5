"""The call budget over a compressed hour: how many 429s, how long a backlog takes, singles vs batches.

    uv run python benchmarks/lms_budget.py [--enrollments N] [--quota Q] [--quota-window S] [--json PATH]

Against the fake TalentLMS (``libs/talentlms-fake``) on a free 127.0.0.1 port with an hourly quota of
``--quota`` calls (300) compressed into ``--quota-window`` seconds (10), and a 200-call short window of
1 s, the ``TalentLmsPlatform`` facade (v1 + v2, one ``CallBudget``) is configured with the default
quota of 2,000 (wrong on purpose: it must learn the real one) and drains ``--enrollments`` (600)
enrolments of known students in two ways:

(a) singles: one v1 ``addusertocourse`` each;
(b) batches: v2 ``batch/enrollments`` of 100, task polls every 0.1 s, then one ``courses/id:X`` read
    back per batch to verify.

A single loop plays the dispatcher: it calls ``budget.refresh()`` (``GET ratelimit``, free) at the start,
and when the budget says ``LmsRateLimited`` it sleeps ``retry_after``. Reported per way: drain time, calls
the fake counted, 429s it answered, calls the budget refused locally (never sent), and whether every
enrolment is there exactly once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from enrollment.adapters.talentlms_platform import TalentLmsConfig, TalentLmsPlatform, build_talentlms
from enrollment.service_layer.ports import LmsRateLimited
from talentlms_fake import STATE_EXTENSION, FakeServer, create_app

API_KEY = "benchmark-fake-talentlms-key"
COURSE = "12"
T = TypeVar("T")


class Dispatcher:
    """Calls through the platform; waits when the budget says so, counting the refusals."""

    def __init__(self, platform: TalentLmsPlatform) -> None:
        self.platform = platform
        self.refused = 0
        self.waited = 0.0

    def call(self, fn: Callable[[], T]) -> T:
        while True:
            try:
                return fn()
            except LmsRateLimited as limited:
                self.refused += 1
                pause = min(max(limited.retry_after, 0.01), 60.0)
                self.waited += pause
                time.sleep(pause)


def run(way: str, enrollments: int, quota: int, window: float) -> dict[str, Any]:
    app = create_app(
        API_KEY,
        rate_limit=200,
        rate_window_seconds=1.0,
        hourly_quota=quota,
        quota_window_seconds=window,
        task_delay_seconds=0.2,
    )
    state = app.extensions[STATE_EXTENSION]
    with FakeServer(app) as server:
        user_ids = [
            state.add_user(
                email=f"known{i}@example.com",
                login=f"known{i}",
                first_name="Known",
                last_name="Student",
                password="Bench-password-1",
            )["id"]
            for i in range(enrollments)
        ]
        platform = build_talentlms(
            TalentLmsConfig(
                base_url=server.base_url,
                api_key=API_KEY,
                hourly_quota=2000,
                quota_window_seconds=window,
                rate_limit_calls=190,
                rate_limit_window_seconds=1.0,
                rate_limit_max_wait_seconds=0.0,
                timeout=10.0,
            )
        )
        dispatcher = Dispatcher(platform)
        started = time.monotonic()
        platform.budget.refresh()
        if way == "singles":
            for user_id in user_ids:
                dispatcher.call(lambda u=user_id: platform.enroll(u, COURSE))
        else:
            for first in range(0, enrollments, 100):
                chunk = user_ids[first : first + 100]
                task_id = dispatcher.call(lambda c=chunk: platform.batch_enroll([(u, COURSE) for u in c]))
                while dispatcher.call(lambda t=task_id: platform.task_status(t)).state in (
                    "pending",
                    "running",
                ):
                    time.sleep(0.1)
                enrolled = dispatcher.call(lambda: platform.course_users(COURSE))
                assert set(chunk) <= enrolled, "a batch item is missing after its task completed"
        elapsed = time.monotonic() - started
        snapshot = state.snapshot()
        platform.close()
    enrolled_pairs = {(e["user_id"], e["course_id"]) for e in snapshot["enrollments"]}
    return {
        "way": way,
        "enrollments": enrollments,
        "drain_seconds": round(elapsed, 2),
        "quota_windows_used": round(elapsed / window, 2),
        "api_calls": snapshot["calls_total"] - snapshot["calls"].get("ratelimit", 0),
        "responses_429": snapshot["responses_429"],
        "refused_locally": dispatcher.refused,
        "exactly_once": len(enrolled_pairs) == snapshot["enrolled_total"] == enrollments,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=600)
    parser.add_argument("--quota", type=int, default=300)
    parser.add_argument("--quota-window", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(argv)
    print(
        f"quota {options.quota} calls / {options.quota_window:g} s (compressed hour), short limit 200 / 1 s;"
        f" client configured with 2000: it must learn"
    )
    results = []
    for way in ("singles", "batches"):
        result = run(way, options.enrollments, options.quota, options.quota_window)
        results.append(result)
        print(
            f"  {way:8}  {result['enrollments']} enrolments  {result['drain_seconds']:7.2f} s"
            f"  ({result['quota_windows_used']} quota windows)  {result['api_calls']:4} calls"
            f"  429s {result['responses_429']}  refused locally {result['refused_locally']}"
            f"  exactly once {result['exactly_once']}"
        )
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["exactly_once"] and r["responses_429"] <= 1 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
