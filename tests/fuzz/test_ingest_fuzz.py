"""Fuzzing the ingest API: never a 5xx, never a crash, every authentic-but-bad body quarantined.

1. schemathesis against ``openapi.yaml`` on a live ingest app (embedded backend, real HTTP server in a
   thread): no 5xx, responses conform to the schema (status codes, content types, bodies).
2. Hypothesis mutations of the real Hotmart samples (wrong types, missing fields, strings up to ~900 KB,
   unicode, nested junk, broken JSON) posted with the right hottok: 200, and the answer matches the store —
   ``accepted`` adds a webhook document, ``quarantined`` a quarantine record, ``duplicate`` nothing.

The long mode (>= 10,000 cases) is ``benchmarks/ingest_fuzz_long.py``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_support import mutated_sample

from coursebridge.backends import open_store
from coursebridge.config import PlatformSettings

HOTTOK = "fuzz-hottok-3e1d"
ADMIN = "fuzz-admin-9b2c"
MAX_EXAMPLES = 100

pytestmark = pytest.mark.timeout(180)


def build(tmp: Path):
    from ingest.bootstrap import build_api
    from ingest.config import IngestSettings

    platform = PlatformSettings(backend="embedded", data_dir=tmp, service_name="ingest")
    app = build_api(IngestSettings(platform=platform, hottoks=(HOTTOK,), admin_token=ADMIN))
    return app, open_store(platform, "ingest")


def counts(store) -> tuple[int, int]:
    return len(store.query("webhooks", [])), len(store.query("quarantine", []))


@pytest.fixture(scope="module")
def live_ingest(tmp_path_factory: pytest.TempPathFactory):
    app, store = build(tmp_path_factory.mktemp("fuzz-live"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", store
    server.shutdown()
    store.close()


def test_schemathesis_against_the_openapi_document(live_ingest) -> None:
    import schemathesis
    import yaml
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    url, _store = live_ingest
    text = resources.files("ingest").joinpath("openapi.yaml").read_text("utf-8")
    schema = schemathesis.openapi.from_dict(yaml.safe_load(text))
    checks = (
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    )
    failures: list[str] = []
    statuses: Counter = Counter()

    @given(case=schema["/webhooks/hotmart"]["POST"].as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def authentic(case) -> None:
        case.headers = {**(case.headers or {}), "X-HOTMART-HOTTOK": HOTTOK}
        response = case.call(base_url=url)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=checks)

    @given(case=schema["/webhooks/hotmart"]["POST"].as_strategy())
    @settings(max_examples=MAX_EXAMPLES // 4, deadline=None, suppress_health_check=list(HealthCheck))
    def unauthenticated(case) -> None:
        response = case.call(base_url=url)  # whatever schemathesis sends as the hottok: never the real one
        statuses[response.status_code] += 1
        assert response.status_code == 401, response.text
        case.validate_response(response, checks=checks)

    for name, probe in (("authentic", authentic), ("unauthenticated", unauthenticated)):
        try:
            probe()
        except Exception as error:  # collect, then fail with all of them
            failures.append(f"{name}: {error}"[:3000])
    for path, method in (("/healthz", "GET"), ("/readyz", "GET"), ("/metrics", "GET")):

        @given(case=schema[path][method].as_strategy())
        @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
        def probe(case) -> None:
            case.validate_response(case.call(base_url=url), checks=checks)

        try:
            probe()
        except Exception as error:
            failures.append(f"{method} {path}: {error}"[:3000])
    print("schemathesis statuses:", dict(statuses))
    assert failures == [], "\n\n".join(failures)
    assert statuses[200] > 0 and statuses[401] > 0


def test_mutated_real_payloads_are_never_5xx_and_always_accounted_for(tmp_path: Path) -> None:
    app, store = build(tmp_path)
    client = app.test_client()
    outcomes: Counter = Counter()

    @given(mutated_sample())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def one(case: tuple[str, bytes]) -> None:
        _name, raw = case
        before = counts(store)
        response = client.post(
            "/webhooks/hotmart",
            data=raw,
            headers={"Content-Type": "application/json", "X-HOTMART-HOTTOK": HOTTOK},
        )
        assert response.status_code == 200, (response.status_code, response.data[:300])
        answer = json.loads(response.data)
        status = answer["status"]
        outcomes[status] += 1
        after = counts(store)
        if status in ("accepted", "test"):  # a Hotmart test send is recorded too, only not published
            assert after == (before[0] + 1, before[1]), (before, after)
        elif status == "conflict":  # same event id, other content: kept aside, never published
            assert after == before and answer.get("reason"), (before, after, answer)
        elif status == "quarantined":
            assert after[0] == before[0] and after[1] in (before[1], before[1] + 1)  # same body: same record
            assert answer.get("reason"), answer
        else:
            assert status == "duplicate" and after == before, (status, before, after)

    try:
        one()
    finally:
        store.close()
    print("mutation outcomes:", dict(outcomes))
    assert outcomes["quarantined"] > 0, outcomes
