"""TalentLMS calls per enrollment, and how fast a burst of enrollments drains under the rate limit.

    uv run python benchmarks/lms_calls.py [--students N] [--enrollments N] [--limit L] [--window W]
                                          [--workers T] [--headroom H] [--new-students] [--json PATH]

Everything runs in this process against the fake TalentLMS (``libs/talentlms-fake``) served on a free
127.0.0.1 port by a threaded werkzeug server, through the real ``TalentLmsClient`` and ``RateLimiter``.
Figures are the API calls the fake counted (``GET /_fake/state``), not what the client thinks it sent.

(a) Calls per enrollment, by how much we know about the student (``--students`` of each, default 50):

* new student, lookup first:          ``users/email`` (miss) → ``usersignup`` → ``addusertocourse``
* new student, sign-up first:         ``usersignup`` → ``addusertocourse`` (what the saga does)
* in TalentLMS but not remembered, sign-up first: ``usersignup`` (email taken) → ``users/email`` → enrol
* in TalentLMS but not remembered, lookup first:  ``users/email`` (hit) → enrol
* known student (email → LMS id remembered): ``addusertocourse`` only
* redelivered approval of a known student: ``addusertocourse`` → "already enrolled" = success
* new student buying a two-course product, sign-up first: one sign-up shared by two enrolments

Targets: new student ≤ 2, known student ≤ 1.

(b) Drain time of a burst: ``--enrollments`` (default 2,000) approvals of known students (one call each;
``--new-students`` adds the sign-up, two calls each) pushed by ``--workers`` threads (16) through one
client whose limiter allows ``floor(L * (1 - H))`` calls per window, against a fake that allows ``--limit``
(200) calls per ``--window`` (1 s by default; TalentLMS's real window is 5 s, which makes the full-size
case ``--enrollments 10000 --window 5`` take about 4.5 minutes). A transient error puts the job back on the
queue. Reported: drain time, the rate-limit bound ``calls / (L / W)``, their ratio (target ≤ 1.1), 429s
and other transient errors, and whether the fake ends with every enrolment exactly once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enrollment.adapters.rate_limit import RateLimiter
from enrollment.adapters.talentlms import TalentLmsClient
from enrollment.service_layer.ports import LmsPermanentError, LmsTransientError, NewUser
from talentlms_fake import STATE_EXTENSION, FakeServer, FakeState, create_app

API_KEY = "benchmark-fake-talentlms-key"
PASSWORD = "Bench-password-1!"
TARGET_NEW = 2.0
TARGET_KNOWN = 1.0
TARGET_DRAIN_RATIO = 1.1


def state_of(server: FakeServer) -> FakeState:
    return server.app.extensions[STATE_EXTENSION]


def api_calls(state: FakeState) -> int:
    """Calls that count against TalentLMS's quota (``ratelimit`` does not)."""
    calls = state.snapshot()["calls"]
    return sum(n for action, n in calls.items() if action != "ratelimit")


# --- (a) calls per enrollment -----------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    calls: int
    approvals: int
    enrollments: int
    target: float | None

    @property
    def per_enrollment(self) -> float:
        return self.calls / self.enrollments

    @property
    def per_approval(self) -> float:
        return self.calls / self.approvals


def calls_per_enrollment(students: int) -> list[Scenario]:
    app = create_app(API_KEY, rate_limit=1_000_000, rate_window_seconds=1.0)
    results: list[Scenario] = []
    with FakeServer(app) as server:
        state = state_of(server)
        client = TalentLmsClient(server.base_url, API_KEY, limiter=RateLimiter(1_000_000, 1.0))

        def sign_up(email: str) -> str:
            login = email.split("@", 1)[0]
            return client.sign_up(
                NewUser(email=email, first_name="Bench", last_name="Mark", login=login, password=PASSWORD)
            ).id

        def measure(name: str, target: float | None, courses: int, run: Any) -> None:
            before = api_calls(state)
            for i in range(students):
                run(i)
            results.append(Scenario(name, api_calls(state) - before, students, students * courses, target))

        def lookup_first(i: int, email: str) -> str:
            user = client.find_user_by_email(email)
            return user.id if user is not None else sign_up(email)

        remembered: dict[str, str] = {}

        def new_lookup_first(i: int) -> None:
            client.enroll(lookup_first(i, f"new.lookup{i}+tag@example.com"), "7")

        def new_sign_up_first(i: int) -> None:
            email = f"new.signup{i}+tag@example.com"
            remembered[email] = sign_up(email)
            client.enroll(remembered[email], "7")

        for i in range(students):  # students TalentLMS knows but this service never saw (not counted)
            state.add_user(
                email=f"existing{i}@example.com",
                login=f"existing{i}",
                first_name="Old",
                last_name="Student",
                password=PASSWORD,
            )

        def existing_sign_up_first(i: int) -> None:
            client.enroll(sign_up(f"existing{i}@example.com"), "7")

        def existing_lookup_first(i: int) -> None:
            client.enroll(lookup_first(i, f"existing{i}@example.com"), "9")

        def known(i: int) -> None:
            client.enroll(remembered[f"new.signup{i}+tag@example.com"], "9")

        def known_redelivered(i: int) -> None:
            assert client.enroll(remembered[f"new.signup{i}+tag@example.com"], "9") is False

        def new_two_courses(i: int) -> None:
            user_id = sign_up(f"new.bundle{i}@example.com")
            client.enroll(user_id, "7")
            client.enroll(user_id, "9")

        measure("new student, lookup first", None, 1, new_lookup_first)
        measure("new student, sign-up first (saga)", TARGET_NEW, 1, new_sign_up_first)
        measure("in LMS, not remembered, sign-up first", None, 1, existing_sign_up_first)
        measure("in LMS, not remembered, lookup first", None, 1, existing_lookup_first)
        measure("known student (id remembered)", TARGET_KNOWN, 1, known)
        measure("known student, redelivered approval", TARGET_KNOWN, 1, known_redelivered)
        measure("new student, 2-course product", TARGET_NEW, 2, new_two_courses)
        client.close()
    return results


# --- (b) drain time of a burst ----------------------------------------------------------------------------


def drain(
    enrollments: int, limit: int, window: float, workers: int, headroom: float, new_students: bool
) -> dict:
    app = create_app(
        API_KEY,
        courses=[{"id": "12", "name": "Spreadsheet Mastery"}],
        rate_limit=limit,
        rate_window_seconds=window,
    )
    client_budget = max(1, math.floor(limit * (1 - headroom)))
    with FakeServer(app) as server:
        state = state_of(server)
        jobs: queue.Queue[tuple[int, str | None]] = queue.Queue()
        for i in range(enrollments):
            user_id = None
            if not new_students:
                user_id = state.add_user(
                    email=f"burst{i}@example.com",
                    login=f"burst{i}",
                    first_name="Burst",
                    last_name="Buyer",
                    password=PASSWORD,
                )["id"]
            jobs.put((i, user_id))
        expected_users = enrollments
        limiter = RateLimiter(client_budget, window, max_wait=max(60.0, 3 * window))
        client = TalentLmsClient(server.base_url, API_KEY, limiter=limiter, timeout=30.0)
        lock = threading.Lock()
        transient: list[str] = []
        permanent: list[str] = []
        already = 0
        done = 0

        def worker() -> None:
            nonlocal already, done
            while True:
                try:
                    i, user_id = jobs.get_nowait()
                except queue.Empty:
                    return
                try:
                    if user_id is None:
                        email = f"burst{i}@example.com"
                        user_id = client.sign_up(
                            NewUser(
                                email=email,
                                first_name="Burst",
                                last_name="Buyer",
                                login=f"burst{i}",
                                password=PASSWORD,
                            )
                        ).id
                    enrolled = client.enroll(user_id, "12")
                except LmsTransientError as exc:
                    with lock:
                        transient.append(str(exc))
                    jobs.put((i, user_id))  # redelivered, as the bus would
                    continue
                except LmsPermanentError as exc:
                    with lock:
                        permanent.append(exc.reason)
                    continue
                with lock:
                    done += 1
                    already += not enrolled

        threads = [threading.Thread(target=worker, name=f"drain-{n}") for n in range(workers)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        client.close()

        snapshot = state.snapshot()
        calls = api_calls(state)
        bound = calls / (limit / window)
        floor_bound = (math.ceil(calls / limit) - 1) * window  # the first window's burst is free
        pairs = {(e["user_id"], e["course_id"]) for e in snapshot["enrollments"]}
        return {
            "enrollments": enrollments,
            "new_students": new_students,
            "workers": workers,
            "fake_limit": limit,
            "window_seconds": window,
            "client_budget": client_budget,
            "api_calls": calls,
            "drain_seconds": elapsed,
            "bound_seconds": bound,
            "ratio": elapsed / bound,
            "fixed_window_minimum_seconds": floor_bound,
            "achieved_calls_per_second": calls / elapsed,
            "http_429": snapshot["rejected"].get("rate_limited", 0),
            "transient_errors": len(transient),
            "permanent_errors": len(permanent),
            "already_enrolled_answers": already,
            "completed": done,
            "fake_enrollments": len(snapshot["enrollments"]),
            "fake_enrolled_total": snapshot["enrolled_total"],
            "fake_users": len(snapshot["users"]),
            "nothing_lost": (
                done == enrollments
                and len(pairs) == enrollments
                and snapshot["enrolled_total"] == enrollments
                and len(snapshot["users"]) == expected_users
            ),
        }


# --- output -----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--students", type=int, default=50, help="students per scenario in (a)")
    parser.add_argument("--enrollments", type=int, default=2000, help="size of the burst in (b)")
    parser.add_argument("--limit", type=int, default=200, help="the fake's calls per window")
    parser.add_argument("--window", type=float, default=1.0, help="the fake's window in seconds (real: 5)")
    parser.add_argument("--workers", type=int, default=16, help="threads draining the burst")
    parser.add_argument("--headroom", type=float, default=0.05, help="client budget = limit x (1 - headroom)")
    parser.add_argument("--new-students", action="store_true", help="each approval also signs the student up")
    parser.add_argument("--skip-calls", action="store_true", help="skip (a)")
    parser.add_argument("--skip-drain", action="store_true", help="skip (b)")
    parser.add_argument("--json", type=Path, help="write every figure here as JSON")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}")
    report: dict[str, Any] = {}
    if not args.skip_calls:
        scenarios = calls_per_enrollment(args.students)
        print(f"\n(a) TalentLMS calls per enrollment ({args.students} students per scenario)")
        print(f"  {'scenario':<40} {'per approval':>12} {'per enrollment':>15}  target")
        for s in scenarios:
            verdict = (
                ""
                if s.target is None
                else f"<= {s.target:g} {'ok' if s.per_enrollment <= s.target else 'MISSED'}"
            )
            print(f"  {s.name:<40} {s.per_approval:>12.2f} {s.per_enrollment:>15.2f}  {verdict}")
        report["calls_per_enrollment"] = [
            {
                "scenario": s.name,
                "per_approval": s.per_approval,
                "per_enrollment": s.per_enrollment,
                "target": s.target,
            }
            for s in scenarios
        ]
    if not args.skip_drain:
        print(
            f"\n(b) draining {args.enrollments} enrollments "
            f"({'new' if args.new_students else 'known'} students), "
            f"fake limit {args.limit} / {args.window:g} s, {args.workers} workers ..."
        )
        result = drain(
            args.enrollments, args.limit, args.window, args.workers, args.headroom, args.new_students
        )
        report["drain"] = result
        verdict = "ok" if result["ratio"] <= TARGET_DRAIN_RATIO else "MISSED"
        print(f"  client budget        {result['client_budget']} calls / {args.window:g} s")
        print(f"  API calls            {result['api_calls']}")
        print(f"  drain time           {result['drain_seconds']:.2f} s")
        print(f"  rate-limit bound     {result['bound_seconds']:.2f} s  (calls / (limit / window))")
        print(f"  ratio                {result['ratio']:.3f}  (target <= {TARGET_DRAIN_RATIO}: {verdict})")
        print(f"  achieved             {result['achieved_calls_per_second']:.1f} calls/s")
        print(f"  429s / transient     {result['http_429']} / {result['transient_errors']}")
        print(f"  permanent errors     {result['permanent_errors']}")
        print(
            f"  in the fake          {result['fake_enrollments']} enrollments, enrolled_total "
            f"{result['fake_enrolled_total']}, {result['fake_users']} users; already-enrolled answers "
            f"{result['already_enrolled_answers']}"
        )
        print(f"  nothing lost         {result['nothing_lost']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    ok = all(
        s["target"] is None or s["per_enrollment"] <= s["target"]
        for s in report.get("calls_per_enrollment", [])
    ) and (
        "drain" not in report
        or (report["drain"]["nothing_lost"] and report["drain"]["ratio"] <= TARGET_DRAIN_RATIO)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
