"""A launch burst through the whole pipeline: N approvals, zero loss, drain time vs the LMS rate limit.

Real processes on the embedded backend (loopback only): fake TalentLMS with ``--lms-limit`` calls per
``--lms-window`` seconds (the enrollment client's limiter set to the same), ingest API + relay, enrollment
API + worker. Maps product 4712 to course 12, then posts N new-student approvals as fast as ingest takes
them (``--senders`` threads), and waits until the fake LMS holds N enrollments.

Bound: a new student costs 2 LMS calls (signup + enroll), so the fastest legal drain is
``2N / (limit / window)`` seconds. Ratio = measured drain (first POST -> last enrollment) / bound; target
<= 1.1. Zero loss = N enrollments, ``enrolled_total == N`` (none twice), every webhook accepted.

    uv run python benchmarks/launch_burst.py [--n 10000] [--lms-limit 200 --lms-window 5]
    uv run python benchmarks/launch_burst.py --n 500 --lms-limit 200 --lms-window 1   # quick look
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "faults")]
from stack_harness import Stack, sample  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--lms-limit", type=int, default=200)
    parser.add_argument("--lms-window", type=float, default=5.0)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=20, help="ENROLLMENT_MAX_IN_FLIGHT")
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="give up after (default: 3x the bound + 120 s)"
    )
    args = parser.parse_args()

    calls_per_student = 2
    bound = calls_per_student * args.n / (args.lms_limit / args.lms_window)
    timeout = args.timeout or 3 * bound + 120
    with tempfile.TemporaryDirectory(prefix="launch-burst-") as tmp:
        stack = Stack(
            Path(tmp),
            extra_env={
                "LOG_LEVEL": "WARNING",
                "TALENTLMS_RATE_LIMIT_CALLS": str(args.lms_limit),
                "TALENTLMS_RATE_LIMIT_SECONDS": str(args.lms_window),
                "TALENTLMS_TIMEOUT_SECONDS": "10",
                "ENROLLMENT_MAX_IN_FLIGHT": str(args.in_flight),
            },
            fake_env={
                "TALENTLMS_FAKE_RATE_LIMIT": str(args.lms_limit),
                "TALENTLMS_FAKE_RATE_WINDOW_SECONDS": str(args.lms_window),
            },
        )
        try:
            stack.start()
            stack.map_products({"4712": ["12"]})
            template = sample("purchase_approved_one_off")
            tag = uuid.uuid4().hex[:6]
            outcomes: dict[str, int] = {}
            lock = threading.Lock()

            def send(indexes: range) -> None:
                session = requests.Session()
                for i in indexes:
                    body = copy.deepcopy(template)
                    body["id"] = str(uuid.uuid4())
                    body["data"]["buyer"]["email"] = f"burst{i}.{tag}@example.com"
                    body["data"]["purchase"]["transaction"] = f"HPB{tag.upper()}{i:06d}"
                    status = stack.post_webhook(body, session=session)["status"]
                    with lock:
                        outcomes[status] = outcomes.get(status, 0) + 1

            start = time.perf_counter()
            threads = [
                threading.Thread(target=send, args=(range(k, args.n, args.senders),))
                for k in range(args.senders)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            ingest_done = time.perf_counter() - start
            print(
                f"ingest took {args.n} approvals in {ingest_done:.1f} s "
                f"({args.n / ingest_done:.0f}/s): {outcomes}"
            )
            state: dict = {}
            last_report = 0.0
            while time.perf_counter() - start < timeout:
                state = stack.fake_state()
                if len(state["enrollments"]) >= args.n:
                    break
                if time.perf_counter() - last_report > 10:
                    last_report = time.perf_counter()
                    print(
                        f"  {time.perf_counter() - start:6.0f} s: {len(state['enrollments'])} enrolled",
                        flush=True,
                    )
                time.sleep(0.2)
            drain = time.perf_counter() - start
            enrolled = len(state["enrollments"])
            print(
                f"launch burst: {args.n} approvals, LMS limit {args.lms_limit} calls / {args.lms_window:g} s"
            )
            print(
                f"  enrolled {enrolled} / {args.n}; enrolled_total {state['enrolled_total']}; "
                f"lost {args.n - enrolled}"
            )
            print(f"  LMS calls {state['calls']}; rejected {state['rejected']}")
            print(
                f"  drain {drain:.1f} s; rate-limit bound {bound:.1f} s; "
                f"ratio {drain / bound:.3f} (target <= 1.1)"
            )
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
