"""The four services' admin APIs, called server side with the admin token (never sent to a browser).

One small client per call the console and the CLI make. Every call names the operator in
``X-CourseBridge-Actor`` so the services' audit trails say who acted. Errors keep the service's own
message; an unreachable service is ``ServiceUnavailable`` (the page says so and shows the rest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

ACTOR_HEADER = "X-CourseBridge-Actor"


class ServiceError(Exception):
    def __init__(self, service: str, status: int, message: str) -> None:
        super().__init__(f"{service}: {message} (HTTP {status})")
        self.service = service
        self.status = status
        self.message = message


class ServiceUnavailable(ServiceError):
    """The service did not answer (connection refused, timeout)."""


@dataclass
class AdminApi:
    """One service's admin API."""

    service: str
    base_url: str
    token: str
    timeout: float = 10.0
    session: requests.Session | None = None

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        actor: str | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if actor:
            headers[ACTOR_HEADER] = actor[:200]
        http = self.session or requests
        try:
            response = http.request(
                method, self.base_url + path, params=params, json=json, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as error:
            raise ServiceUnavailable(self.service, 0, f"not reachable ({type(error).__name__})") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code not in ok:
            message = body.get("message") if isinstance(body, dict) else None
            raise ServiceError(self.service, response.status_code, message or response.reason or "error")
        return body

    def health(self) -> dict[str, Any]:
        """``/readyz`` (no token needed): ready, or what fails."""
        try:
            response = (self.session or requests).get(self.base_url + "/readyz", timeout=self.timeout)
            body = response.json()
        except (requests.RequestException, ValueError) as error:
            return {"status": "unreachable", "detail": type(error).__name__}
        return {"status": body.get("status", "unknown"), "detail": body.get("failures") or body.get("notes")}


def _seg(value: str) -> str:
    return quote(value, safe="@")


@dataclass
class Services:
    """The calls the console makes, grouped by the service that owns the data."""

    ingest: AdminApi
    enrollment: AdminApi
    subscription: AdminApi
    analytics: AdminApi

    @classmethod
    def from_urls(cls, urls: Mapping[str, str], token: str, timeout: float = 10.0) -> Services:
        session = requests.Session()
        return cls(
            **{name: AdminApi(name, urls[name], token, timeout, session) for name in SERVICES_WITH_API}
        )

    def all(self) -> dict[str, AdminApi]:
        return {name: getattr(self, name) for name in SERVICES_WITH_API}

    # --- ingest ---
    def ingest_lookup(self, **criterion: str) -> dict[str, Any]:
        return self.ingest.call("GET", "/admin/lookup", params=criterion)

    def quarantine(self, status: str | None = "quarantined", limit: int = 100) -> list[dict[str, Any]]:
        params = {"limit": str(limit), **({"status": status} if status else {})}
        return self.ingest.call("GET", "/admin/quarantine", params=params)["items"]

    def quarantined(self, doc_id: str) -> dict[str, Any]:
        return self.ingest.call("GET", f"/admin/quarantine/{_seg(doc_id)}")

    def reprocess(self, doc_id: str, actor: str) -> dict[str, Any]:
        return self.ingest.call("POST", f"/admin/quarantine/{_seg(doc_id)}/reprocess", actor=actor)

    # --- enrollment ---
    def student(self, email: str) -> dict[str, Any]:
        return self.enrollment.call("GET", f"/students/{_seg(email)}/enrollments")

    def students_of(self, **criterion: str) -> list[dict[str, Any]]:
        return self.enrollment.call("GET", "/admin/students", params=criterion)["students"]

    def resync(self, email: str, actor: str) -> dict[str, Any]:
        return self.enrollment.call("POST", f"/admin/students/{_seg(email)}/resync", actor=actor)

    def failed(self) -> list[dict[str, Any]]:
        return self.enrollment.call("GET", "/admin/students/failed")["students"]

    def parked(self) -> list[dict[str, Any]]:
        return self.enrollment.call("GET", "/admin/parked")["parked"]

    def queue(self) -> dict[str, Any]:
        return self.enrollment.call("GET", "/admin/lms/queue")

    def courses(self) -> list[dict[str, Any]]:
        return self.enrollment.call("GET", "/admin/lms/courses")["courses"]

    def products(self) -> list[dict[str, Any]]:
        return self.enrollment.call("GET", "/admin/products")["products"]

    def product(self, product_id: str) -> dict[str, Any] | None:
        try:
            return self.enrollment.call("GET", f"/admin/products/{_seg(product_id)}")
        except ServiceError as error:
            if error.status == 404:
                return None
            raise

    def product_audit(self, product_id: str) -> list[dict[str, Any]]:
        return self.enrollment.call("GET", f"/admin/products/{_seg(product_id)}/audit")["audit"]

    def map_product(
        self, product_id: str, mapping: dict[str, Any], actor: str, *, dry_run: bool = False
    ) -> dict[str, Any]:
        return self.enrollment.call(
            "PUT",
            f"/admin/products/{_seg(product_id)}",
            params={"dry_run": "true"} if dry_run else None,
            json=mapping,
            actor=actor,
        )

    # --- subscription ---
    def accesses(self, **criterion: str) -> list[dict[str, Any]]:
        return self.subscription.call("GET", "/admin/accesses", params=criterion)["accesses"]

    def payments(self, transaction: str) -> list[dict[str, Any]]:
        """What analytics recorded of a transaction (amounts per currency, kinds, times)."""
        return self.analytics.call("GET", "/admin/payments", params={"transaction": transaction})["payments"]

    # --- analytics: the Revenue and Learning pages (the query was checked by console.domain.reports) ---
    def revenue_options(self) -> dict[str, list[str]]:
        return self.analytics.call("GET", "/revenue/options")

    def revenue_daily(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        return self.analytics.call("GET", "/revenue/daily", params=params)

    def revenue_summary(self, params: Mapping[str, str], report: str | None = None) -> dict[str, Any]:
        return self.analytics.call(
            "GET", "/revenue/summary", params={**params, **({"report": report} if report else {})}
        )

    def revenue_view(self, name: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        if name not in REVENUE_VIEWS:
            raise ValueError(f"unknown view {name!r}; one of {', '.join(REVENUE_VIEWS)}")
        return self.analytics.call("GET", f"/views/{name}", params=params)

    def learning_cohorts(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Per product and cohort month: buyers, started, completed, their rates, median hours to first
        access; and ``activity`` (how many learning events analytics has read). 404 from an analytics
        that predates the learning views."""
        return self.analytics.call("GET", "/learning/cohorts", params=params)

    def learning_refunds(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Refund rate per product and progress bucket (never_started, started, completed)."""
        return self.analytics.call("GET", "/learning/refunds-by-progress", params=params)

    # --- dead letters (enrollment and subscription keep theirs) ---
    def deadletters(self, service: str, status: str = "held") -> list[dict[str, Any]]:
        return self._dl(service).call("GET", "/admin/deadletters", params={"status": status})["items"]

    def deadletter(self, service: str, doc_id: str) -> dict[str, Any]:
        return self._dl(service).call("GET", f"/admin/deadletters/{_seg(doc_id)}")

    def deadletter_action(self, service: str, doc_id: str, action: str, actor: str) -> dict[str, Any]:
        if action not in ("replay", "discard"):
            raise ValueError(f"unknown dead-letter action {action!r}")
        return self._dl(service).call(
            "POST", f"/admin/deadletters/{_seg(doc_id)}/{action}", actor=actor, ok=(200, 409)
        )

    def _dl(self, service: str) -> AdminApi:
        if service not in DEADLETTER_SERVICES:
            raise ValueError(f"{service} keeps no dead letters; one of {', '.join(DEADLETTER_SERVICES)}")
        return getattr(self, service)


SERVICES_WITH_API = ("ingest", "enrollment", "subscription", "analytics")
DEADLETTER_SERVICES = ("enrollment", "subscription")
REVENUE_VIEWS = ("mrr_monthly", "churn_monthly", "refund_rates_monthly")
