"""``python -m talentlms_fake``: the fake portal on 127.0.0.1:$TALENTLMS_FAKE_PORT (default 8090).

Environment: TALENTLMS_FAKE_PORT; the API key from TALENTLMS_FAKE_API_KEY, else TALENTLMS_API_KEY, else
``local-fake-talentlms-key``; TALENTLMS_FAKE_RATE_LIMIT (200) calls per TALENTLMS_FAKE_RATE_WINDOW_SECONDS
(5); TALENTLMS_FAKE_HOURLY_QUOTA (unset = none); TALENTLMS_FAKE_LOG=1 prints one line per call (action and
status only). Seeds DEMO_COURSES, which match the sample Hotmart products 4711 and 4712.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from talentlms_fake.app import STATE_EXTENSION, create_app
from talentlms_fake.server import FakeServer
from talentlms_fake.state import DEMO_MAPPINGS

DEFAULT_API_KEY = "local-fake-talentlms-key"


def main() -> int:
    port = int(os.environ.get("TALENTLMS_FAKE_PORT", "8090"))
    api_key = (
        os.environ.get("TALENTLMS_FAKE_API_KEY") or os.environ.get("TALENTLMS_API_KEY") or DEFAULT_API_KEY
    )
    hourly = os.environ.get("TALENTLMS_FAKE_HOURLY_QUOTA")
    app = create_app(
        api_key,
        rate_limit=int(os.environ.get("TALENTLMS_FAKE_RATE_LIMIT", "200")),
        rate_window_seconds=float(os.environ.get("TALENTLMS_FAKE_RATE_WINDOW_SECONDS", "5")),
        hourly_quota=int(hourly) if hourly else None,
    )
    verbose = os.environ.get("TALENTLMS_FAKE_LOG", "").lower() in ("1", "true", "yes")
    server = FakeServer(app, "127.0.0.1", port, quiet=not verbose)
    state = app.extensions[STATE_EXTENSION]
    key_note = "the default local key" if api_key == DEFAULT_API_KEY else "the key from the environment"
    print(f"TalentLMS fake on {server.base_url} (Basic auth with {key_note}, empty password)")
    print(f"  rate limit {state.rate_limit} calls / {state.rate_window_seconds:g} s", end="")
    print(f", hourly quota {state.hourly_quota}" if state.hourly_quota else "")
    print("  seeded courses:")
    for course in state.list_courses():
        print(f"    {course['id']:>4}  {course['name']}")
    print("  demo product mappings (PUT /admin/products/<id> on the enrollment service):")
    for product, mapping in DEMO_MAPPINGS.items():
        print(f"    {product}  {json.dumps(mapping)}")
    print(f"  test controls: {server.url}/_fake/ (state, failures, reset, courses, users)", flush=True)

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


if __name__ == "__main__":
    sys.exit(main())
