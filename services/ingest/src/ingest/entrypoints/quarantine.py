"""Operators' CLI: ``python -m ingest.entrypoints.quarantine list`` / ``reprocess --all`` / ``reprocess ID``.

After a normaliser upgrade, bodies quarantined by the old one may now be understood: ``reprocess`` runs
them through today's normaliser; each one that normalises is stored as if it had just arrived (with its
original reception time, deduplicated as usual) and its record is marked ``reprocessed``. Prints one JSON
object per body and a summary line; exits 1 only when the store cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from coursebridge.backends import open_store
from coursebridge.runtime.logging import configure_logging
from ingest.config import IngestSettings
from ingest.service_layer.intake import QUARANTINE, reprocess_quarantined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.entrypoints.quarantine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="quarantined bodies still waiting, with the reason")
    again = commands.add_parser("reprocess", help="normalise quarantined bodies again")
    again.add_argument("ids", nargs="*", help="quarantine ids (see list)")
    again.add_argument("--all", action="store_true", help="every body still quarantined")
    args = parser.parse_args(argv)
    settings = IngestSettings.from_env(require_hottok=False)
    configure_logging("ingest-quarantine", settings.platform.log_level)
    store = open_store(settings.platform, "ingest")
    try:
        waiting = (  # records older than the status field are quarantined too
            doc for doc in store.scan(QUARANTINE) if doc.data.get("status", "quarantined") == "quarantined"
        )
        if args.command == "list":
            count = 0
            for doc in waiting:
                count += 1
                fields = ("received_at", "hotmart_event", "hotmart_event_id", "reason")
                print(json.dumps({"id": doc.id, **{k: doc.data.get(k) for k in fields}}))
            print(json.dumps({"quarantined": count}))
            return 0
        if not args.all and not args.ids:
            parser.error("reprocess needs quarantine ids or --all")
        ids = [doc.id for doc in waiting] if args.all else args.ids
        outcomes: Counter[str] = Counter()
        for doc_id in ids:
            result = reprocess_quarantined(store, doc_id, accept_tests=settings.accept_test_events)
            outcome = "not_found" if result is None else result.outcome
            outcomes[outcome] += 1
            line = {"id": doc_id, "outcome": outcome}
            if result is not None and result.reason:
                line["reason"] = result.reason[:300]
            print(json.dumps(line))
        print(json.dumps({"reprocessed": len(ids), "outcomes": dict(outcomes)}))
        return 0
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}), file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
