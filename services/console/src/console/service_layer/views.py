"""What each console page (and CLI command) asks the services, put together.

Each service answers for its own data; a service that is down costs only its part of a page (reported
in ``errors``), never the whole answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from console.adapters.services import DEADLETTER_SERVICES, ServiceError, Services
from console.domain.buyer import BuyerView, classify, course_lines, letters_of, timeline

T = TypeVar("T")


def _try(errors: dict[str, str], service: str, call: Callable[[], T], default: T) -> T:
    try:
        return call()
    except ServiceError as error:
        errors.setdefault(service, error.message if error.status else f"{service} is not reachable")
        return default


def held_letters(services: Services, errors: dict[str, str]) -> list[dict[str, Any]]:
    letters = []
    for service in DEADLETTER_SERVICES:
        items = _try(errors, service, lambda s=service: services.deadletters(s), [])
        letters += [{**item, "service": service} for item in items]
    return letters


MAX_TRANSACTIONS = 20  # payments shown per buyer view (one analytics call each)


def find_buyer(services: Services, query: str) -> BuyerView:
    query = query.strip()
    kind = classify(query)
    view = BuyerView(query=query, kind=kind)
    errors = view.errors
    ingest = _try(errors, "ingest", lambda: services.ingest_lookup(**{kind: query}), None)

    emails: list[str] = [query.lower()] if kind == "email" else []
    accesses: list[dict[str, Any]] = []
    if kind != "email":
        found = _try(errors, "enrollment", lambda: services.students_of(**{kind: query}), [])
        emails += [s["email"] for s in found if s.get("email")]
    if kind == "subscriber_code":
        accesses = _try(errors, "subscription", lambda: services.accesses(subscriber_code=query), [])
        emails += [a["email"] for a in accesses if a.get("email")]
    view.emails = sorted(set(emails))

    students = {}
    for email in view.emails:
        student = _try(errors, "enrollment", lambda e=email: services.student(e), None)
        if student is not None and student.get("email_known"):
            students[email] = student
        if kind != "subscriber_code":
            accesses += _try(errors, "subscription", lambda e=email: services.accesses(email=e), [])
    accesses = list({a["access_id"]: a for a in accesses}.values())

    names = {
        str(c.get("id")): str(c.get("name") or "") for c in _try(errors, "enrollment", services.courses, [])
    }
    for email, student in students.items():
        view.courses += course_lines(email, student, accesses, names)
        view.parked += [{**p, "email": email} for p in student.get("parked") or []]

    transactions = {query} if kind == "transaction" else set()
    transactions |= {
        w.get("transaction") for w in (ingest or {}).get("webhooks") or [] if w.get("transaction")
    }
    for student in students.values():
        transactions |= {s.get("transaction") for s in student.get("sources") or [] if s.get("transaction")}
    codes = {query} if kind == "subscriber_code" else set()
    for student in students.values():
        codes |= {
            s["access_id"].split(":")[1]
            for s in student.get("sources") or []
            if str(s.get("access_id", "")).startswith("sub:")
        }
    letters = letters_of(held_letters(services, errors), transactions, codes)
    payments = [
        payment
        for transaction in sorted(t for t in transactions if t)[:MAX_TRANSACTIONS]
        for payment in _try(errors, "analytics", lambda t=transaction: services.payments(t), [])
    ]
    view.timeline = timeline(
        ingest=ingest, students=students, accesses=accesses, deadletters=letters, payments=payments
    )
    return view


def problems(services: Services) -> dict[str, Any]:
    errors: dict[str, str] = {}
    parked = _try(errors, "enrollment", services.parked, [])
    parked.sort(key=lambda p: p.get("parked_at") or "")
    return {
        "quarantine": _try(errors, "ingest", services.quarantine, []),
        "deadletters": held_letters(services, errors),
        "failed": _try(errors, "enrollment", services.failed, []),
        "parked": parked,
        "errors": errors,
    }


def overview(services: Services) -> dict[str, Any]:
    errors: dict[str, str] = {}
    started = time.perf_counter()
    health = {name: api.health() for name, api in services.all().items()}
    queue = _try(errors, "enrollment", services.queue, {})
    quarantine = _try(errors, "ingest", services.quarantine, [])
    return {
        "health": health,
        "queue": queue,
        "quarantined": len(quarantine),
        "deadletters": len(held_letters(services, errors)),
        "freshness": _webhook_freshness(services, errors),
        "errors": errors,
        "took_ms": round((time.perf_counter() - started) * 1000),
    }


def _webhook_freshness(services: Services, errors: dict[str, str]) -> dict[str, Any]:
    """When ingest last received an authentic webhook (its own gauge, read from /metrics)."""
    import requests

    try:
        text = requests.get(services.ingest.base_url + "/metrics", timeout=services.ingest.timeout).text
    except requests.RequestException:
        errors.setdefault("ingest", "ingest is not reachable")
        return {"last_received_at": None, "age_seconds": None}
    for line in text.splitlines():
        if line.startswith("coursebridge_webhook_last_received_timestamp_seconds"):
            try:
                value = float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
            if value > 0:
                return {"last_received_at": value, "age_seconds": max(0.0, time.time() - value)}
    return {"last_received_at": None, "age_seconds": None}


def product_page(services: Services, product_id: str) -> dict[str, Any]:
    errors: dict[str, str] = {}
    return {
        "product_id": product_id,
        "mapping": _try(errors, "enrollment", lambda: services.product(product_id), None),
        "courses": _try(errors, "enrollment", services.courses, []),
        "audit": list(reversed(_try(errors, "enrollment", lambda: services.product_audit(product_id), []))),
        "parked": [
            p for p in _try(errors, "enrollment", services.parked, []) if p.get("product_id") == product_id
        ],
        "errors": errors,
    }
