"""Long fuzzing run of the ingest API (not in CI): >= 10,000 Hypothesis-mutated real Hotmart payloads.

Same mutations and checks as ``tests/fuzz/test_ingest_fuzz.py`` (in process, embedded backend, right
hottok): never a 5xx, the answer matches the store. Prints cases/s and the outcomes.

    uv run python benchmarks/ingest_fuzz_long.py [--cases 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
from fuzz_support import mutated_sample  # noqa: E402

from coursebridge.backends import open_store  # noqa: E402
from coursebridge.config import PlatformSettings  # noqa: E402

HOTTOK = "fuzz-long-hottok"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000)
    args = parser.parse_args()
    from ingest.bootstrap import build_api
    from ingest.config import IngestSettings

    with tempfile.TemporaryDirectory(prefix="ingest-fuzz-") as tmp:
        platform = PlatformSettings(
            backend="embedded", data_dir=Path(tmp), service_name="ingest", log_level="ERROR"
        )
        client = build_api(IngestSettings(platform=platform, hottoks=(HOTTOK,))).test_client()
        store = open_store(platform, "ingest")
        outcomes: Counter = Counter()
        problems: list[str] = []

        @given(mutated_sample())
        @settings(
            max_examples=args.cases, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def one(case: tuple[str, bytes]) -> None:
            name, raw = case
            response = client.post(
                "/webhooks/hotmart",
                data=raw,
                headers={"Content-Type": "application/json", "X-HOTMART-HOTTOK": HOTTOK},
            )
            if response.status_code != 200:
                outcomes[f"HTTP {response.status_code}"] += 1
                problems.append(f"{name}: {response.status_code} {response.data[:200]!r}")
                return
            outcomes[json.loads(response.data)["status"]] += 1

        start = time.perf_counter()
        one()
        elapsed = time.perf_counter() - start
        total = sum(outcomes.values())
        stored = len(store.query("webhooks", [])), len(store.query("quarantine", []))
        store.close()
    print(f"ingest fuzz (long): {total} cases in {elapsed:.1f} s = {total / elapsed:.0f} cases/s")
    print(f"  outcomes {dict(outcomes)}; stored webhooks {stored[0]}, quarantine records {stored[1]}")
    print(f"  problems: {len(problems)}")
    for problem in problems[:20]:
        print("   ", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
