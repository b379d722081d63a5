"""``python -m talentlms_fake``: the fake portal on 127.0.0.1:$TALENTLMS_FAKE_PORT (default 8090).

Environment: TALENTLMS_FAKE_PORT; the API key from TALENTLMS_FAKE_API_KEY, else TALENTLMS_API_KEY, else
``local-fake-talentlms-key``; TALENTLMS_FAKE_RATE_LIMIT (200) calls per TALENTLMS_FAKE_RATE_WINDOW_SECONDS
(5); TALENTLMS_FAKE_HOURLY_QUOTA (unset = none) per TALENTLMS_FAKE_QUOTA_WINDOW_SECONDS (3600);
TALENTLMS_FAKE_TASK_DELAY_SECONDS (0.2); TALENTLMS_FAKE_LOG=1 prints one line per call (endpoint and
status only); TALENTLMS_FAKE_SIMULATE_LEARNERS=1 (``--simulate-learners``) makes a share of enrolled users
sign in and complete courses by themselves (``make run`` sets it). Flags override the environment:
``--port``, ``--quota 2000 --quota-window 60`` (a compressed
hour for benchmarks), ``--rate-limit``, ``--rate-window``, ``--task-delay``, ``--api-version`` (repeat to
accept only those ``X-API-Version`` values), ``--log``. Seeds DEMO_COURSES, which match the sample Hotmart
products 4711 and 4712.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from talentlms_fake.app import STATE_EXTENSION, create_app
from talentlms_fake.server import FakeServer
from talentlms_fake.state import DEMO_MAPPINGS, FakeState

DEFAULT_API_KEY = "local-fake-talentlms-key"


def _options(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m talentlms_fake", description="A local TalentLMS portal.")
    parser.add_argument("--port", type=int, default=int(env.get("TALENTLMS_FAKE_PORT") or 8090))
    parser.add_argument(
        "--quota",
        type=int,
        default=int(env["TALENTLMS_FAKE_HOURLY_QUOTA"]) if env.get("TALENTLMS_FAKE_HOURLY_QUOTA") else None,
        help="calls per quota window, shared by v1 and v2 (default: none)",
    )
    parser.add_argument(
        "--quota-window",
        type=float,
        default=float(env.get("TALENTLMS_FAKE_QUOTA_WINDOW_SECONDS") or 3600),
        help="seconds of the 'hourly' quota window (shorten it to compress an hour)",
    )
    parser.add_argument("--rate-limit", type=int, default=int(env.get("TALENTLMS_FAKE_RATE_LIMIT") or 200))
    parser.add_argument(
        "--rate-window", type=float, default=float(env.get("TALENTLMS_FAKE_RATE_WINDOW_SECONDS") or 5)
    )
    parser.add_argument(
        "--task-delay", type=float, default=float(env.get("TALENTLMS_FAKE_TASK_DELAY_SECONDS") or 0.2)
    )
    parser.add_argument("--api-version", action="append", default=None, help="accepted X-API-Version")
    parser.add_argument(
        "--simulate-learners",
        action="store_true",
        default=env.get("TALENTLMS_FAKE_SIMULATE_LEARNERS", "").lower() in ("1", "true", "yes"),
        help="enrolled users sign in and complete courses by themselves (make run's Learning dashboard)",
    )
    parser.add_argument(
        "--log",
        action="store_true",
        default=env.get("TALENTLMS_FAKE_LOG", "").lower() in ("1", "true", "yes"),
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    port = options.port
    api_key = (
        os.environ.get("TALENTLMS_FAKE_API_KEY") or os.environ.get("TALENTLMS_API_KEY") or DEFAULT_API_KEY
    )
    app = create_app(
        api_key,
        rate_limit=options.rate_limit,
        rate_window_seconds=options.rate_window,
        hourly_quota=options.quota,
        quota_window_seconds=options.quota_window,
        task_delay_seconds=options.task_delay,
        api_versions=options.api_version,
    )
    server = FakeServer(app, "127.0.0.1", port, quiet=not options.log)
    state = app.extensions[STATE_EXTENSION]
    key_note = "the default local key" if api_key == DEFAULT_API_KEY else "the key from the environment"
    print(f"TalentLMS fake on {server.base_url} (Basic auth with {key_note}, empty password)")
    print(f"  rate limit {state.rate_limit} calls / {state.rate_window_seconds:g} s", end="")
    quota = f", quota {state.hourly_quota} / {state.quota_window_seconds:g} s" if state.hourly_quota else ""
    print(quota + f"; v1 at {server.base_url}, v2 at {server.url}/api/v2 (X-API-Key)")
    print("  seeded courses:")
    for course in state.list_courses():
        print(f"    {course['id']:>4}  {course['name']}")
    print("  demo product mappings (PUT /admin/products/<id> on the enrollment service):")
    for product, mapping in DEMO_MAPPINGS.items():
        print(f"    {product}  {json.dumps(mapping)}")
    print(f"  test controls: {server.url}/_fake/ (state, failures, reset, courses, users)", flush=True)

    if options.simulate_learners:
        print("  learner simulation on: enrolled users sign in and complete courses by themselves")
        threading.Thread(target=_simulate, args=(state,), name="learners", daemon=True).start()

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


SIMULATION_TICK_SECONDS = 2.0


def _simulate(state: FakeState) -> None:
    """Tick the learner simulation until the process ends (a daemon thread)."""
    stopped = threading.Event()
    while not stopped.wait(SIMULATION_TICK_SECONDS):
        state.simulate_learners()


if __name__ == "__main__":
    sys.exit(main())
