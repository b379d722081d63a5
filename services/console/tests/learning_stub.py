"""Analytics' learning endpoints as agreed, for the console's tests while analytics does not serve them yet.

Registered by ``inproc_stack`` on the real analytics app ONLY when that app has no ``/learning/cohorts``
route; once analytics serves the learning views, the tests run against the real ones. It answers the
agreed contract from rows a test sets (``cohorts``, ``refunds``, ``events``), cut to the range's cohort
months and the product like analytics would; ``served = False`` makes it answer 404 like an older analytics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from flask import Blueprint, jsonify, request

from coursebridge.runtime.auth import require_bearer


@dataclass
class LearningStub:
    cohorts: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    last_occurred_at: str | None = None
    served: bool = True
    calls: list[str] = field(default_factory=list)

    def blueprint(self, admin_token: str) -> Blueprint:
        bp = Blueprint("learning_stub", __name__)

        def scope() -> tuple[date, date, str | None]:
            return (
                date.fromisoformat(request.args["from"]),
                date.fromisoformat(request.args["to"]),
                request.args.get("product") or None,
            )

        @bp.get("/learning/cohorts")
        @require_bearer(admin_token)
        def cohorts():
            self.calls.append(request.full_path)
            if not self.served:
                return jsonify(error="not_found", message="not found"), 404
            start, end, product = scope()
            rows = [
                r
                for r in self.cohorts
                if start.replace(day=1).isoformat() <= r["cohort_month"] <= end.isoformat()
                and (product is None or r["product_id"] == product)
            ]
            activity = {"events": self.events, "last_occurred_at": self.last_occurred_at}
            return jsonify(rows=rows, activity=activity)

        @bp.get("/learning/refunds-by-progress")
        @require_bearer(admin_token)
        def refunds():
            self.calls.append(request.full_path)
            if not self.served:
                return jsonify(error="not_found", message="not found"), 404
            _start, _end, product = scope()
            return jsonify(rows=[r for r in self.refunds if product is None or r["product_id"] == product])

        return bp
