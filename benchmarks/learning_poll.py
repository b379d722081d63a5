"""The learning poll against the fake TalentLMS: calls per poll, time to publish, and the 200 trap.

    uv run python benchmarks/learning_poll.py [--students N] [--json PATH]

Everything runs in this process: the fake TalentLMS (``libs/talentlms-fake``) on a free 127.0.0.1 port, the
``TalentLmsPlatform`` facade (one call budget), enrollment's use cases on the embedded store (the test
harness of ``services/enrollment/tests``) and the ``LearningPoller`` the dispatcher's housekeeping runs.
``--students`` (200) buyers of product 4711 (courses 7 and 9) are enrolled first. Then, one poll each:

(a) a first activity burst: every student signs in once and every third completes course 7;
(b) nothing new;
(c) the trap: 300 completions since the last poll (150 of course 7, then 150 of course 9): the answer is
    full, the poll re-reads every mapped course and should lose nothing.

Reported per poll: ``gettimeline`` calls the fake counted, events published, gaps, wall time. Calls per
hour at the defaults (900 s, 5 % of a 2,000 quota) are computed from the steady-state calls per poll.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "enrollment" / "tests"))

API_KEY = "benchmark-fake-talentlms-key"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args(argv)

    from controller_support import Harness

    from coursebridge.runtime.logging import configure_logging
    from enrollment.adapters.talentlms_platform import TalentLmsConfig, build_talentlms
    from talentlms_fake import STATE_EXTENSION, FakeServer, create_app

    configure_logging("benchmark", "WARNING")
    server = FakeServer(create_app(API_KEY, rate_limit=1000, rate_window_seconds=1.0)).start()
    state = server.app.extensions[STATE_EXTENSION]
    platform = build_talentlms(
        TalentLmsConfig(
            base_url=server.base_url,
            api_key=API_KEY,
            timeout=5.0,
            rate_limit_calls=900,
            rate_limit_window_seconds=1.0,
        )
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(Path(tmp), lms=platform, learning_interval=900)  # type: ignore[arg-type]
        try:
            h.map("4711", {"course_ids": ["7", "9"]})
            emails = [f"learner{n:05d}@example.com" for n in range(options.students)]
            for n, email in enumerate(emails):
                h.pay(transaction=f"HPB{n:06d}", email=email)
            h.drain(max_rounds=10 * options.students)
            users = [h.record(email).user_id or "" for email in emails]
            poller = h.dispatcher.learning
            assert poller is not None
            now = int(time.time())

            def poll(name: str) -> None:
                before = state.snapshot()["calls"].get("gettimeline", 0)
                started = time.perf_counter()
                run = poller.step(platform.quota())
                seconds = time.perf_counter() - started
                calls = state.snapshot()["calls"].get("gettimeline", 0) - before
                rows.append(
                    {
                        "poll": name,
                        "gettimeline_calls": calls,
                        "published": dict(run.published),
                        "gaps": list(run.gaps),
                        "courses_reread": list(run.courses_reread),
                        "seconds": round(seconds, 3),
                    }
                )

            for n, user in enumerate(users):
                state.record_event("user_login_user", user, at=now - 600 + n % 300)
                if n % 3 == 0:
                    state.record_event("course_completion", user, "7", at=now - 500 + n % 300)
            poll("(a) first burst")
            poll("(b) nothing new")
            for n in range(300):
                course = "7" if n < 150 else "9"
                state.record_event("course_completion", users[n % len(users)], course, at=now + 1 + n)
            poll("(c) 300 completions since the last poll")
        finally:
            h.close()
            platform.close()
            server.stop()

    steady = rows[1]["gettimeline_calls"]
    per_hour = steady * 3600 / 900
    print(f"learning poll, {options.students} enrolled students, fake TalentLMS on 127.0.0.1")
    print(f"{'poll':<42} {'calls':>5} {'published':<44} {'gaps':<22} {'s':>6}")
    for row in rows:
        print(
            f"{row['poll']:<42} {row['gettimeline_calls']:>5} {json.dumps(row['published']):<44} "
            f"{','.join(row['gaps']) or '-':<22} {row['seconds']:>6}"
        )
    share = int(2000 * 0.05)
    print(f"calls per hour at the defaults (900 s): {per_hour:.0f} of a share of {share} (5 % of 2,000)")
    trap = rows[2]["published"].get("course_completed", 0)
    print(f"trap: {trap} of 300 completions published (re-read courses: {rows[2]['courses_reread']})")
    if options.json is not None:
        options.json.write_text(json.dumps({"rows": rows, "calls_per_hour": per_hour}, indent=2))
    return 0 if trap == 300 else 1


if __name__ == "__main__":
    sys.exit(main())
