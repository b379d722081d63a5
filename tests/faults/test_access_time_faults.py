"""Time between services, through real processes (ingest, subscription, enrollment, TalentLMS fake), on
both backends.

- **A late renewal after the sweep.** A subscriber falls overdue; the renewal is paid *before* the grace
  deadline, but reaches CourseBridge only after the subscription worker's sweep suspended the access and
  enrollment removed the courses. The restoration's business time is older than the suspension's, yet it
  is the later decision (a higher version): the student is enrolled again, and stays enrolled through the
  following sweeps and a redelivered overdue notice.
- **A parked fixed-term sale.** A one-off sale of an unmapped product is parked; when the product is
  mapped with ``access_days`` and the term has already ended, the subscription service creates the
  access at once and expires it: the student does not keep lifetime access.
"""

from __future__ import annotations

import copy
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from stack_harness import Stack, lms_pairs, sample, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SUB_COURSES = {"7", "9"}
TERM_PRODUCT = "4798"  # mapped only during the test, with access_days


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _subscription_webhook(
    template: str,
    *,
    email: str,
    code: str,
    transaction: str,
    at: datetime,
    next_charge: datetime | None,
    rec: int,
) -> dict[str, Any]:
    body = copy.deepcopy(sample(template))
    body["id"] = str(uuid.uuid4())
    body["creation_date"] = _ms(at)
    data = body["data"]
    data["buyer"]["email"] = email
    data["subscription"]["subscriber"]["code"] = code
    data["subscription"]["plan"] = {"id": 101, "name": "Monthly"}
    purchase = data["purchase"]
    purchase.update(transaction=transaction, recurrence_number=rec, order_date=_ms(at))
    if next_charge is None:
        purchase.pop("date_next_charge", None)
    else:
        purchase["date_next_charge"] = _ms(next_charge)
    if "approved_date" in purchase or template.startswith("purchase_approved"):
        purchase["approved_date"] = _ms(at)
    return body


def _one_off_webhook(*, email: str, transaction: str, product: str, at: datetime) -> dict[str, Any]:
    body = copy.deepcopy(sample("purchase_approved_one_off"))
    body["id"] = str(uuid.uuid4())
    body["creation_date"] = _ms(at)
    data = body["data"]
    data["buyer"]["email"] = email
    data["product"]["id"] = int(product)
    data["purchase"].update(transaction=transaction, order_date=_ms(at), approved_date=_ms(at))
    return body


def _subscription_state(stack: Stack, code: str) -> dict[str, Any] | None:
    response = requests.get(
        f"{stack.urls['subscription']}/subscriptions/{code}", headers=stack.admin, timeout=10
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()["accesses"][0]


def _courses_of(stack: Stack, email: str) -> set[str]:
    return {course for who, course in lms_pairs(stack.fake_state()) if who == email}


def _late_renewal(stack: Stack, tag: str) -> None:
    now = datetime.now(UTC)
    email, code = f"late.renewal.{tag}@example.com", f"SUB-LATE-{tag.upper()}"
    first = _subscription_webhook(
        "purchase_approved_subscription_first",
        email=email,
        code=code,
        transaction=f"HPL{tag.upper()}1",
        at=now - timedelta(days=40),
        next_charge=None,  # not reported: the overdue notice alone drives the suspension
        rec=1,
    )
    overdue = _subscription_webhook(
        "purchase_delayed",
        email=email,
        code=code,
        transaction=f"HPL{tag.upper()}2",
        at=now - timedelta(days=10),  # the 7-day grace period ended 3 days ago
        next_charge=now - timedelta(days=10),
        rec=2,
    )
    renewal = _subscription_webhook(
        "purchase_approved_subscription_renewal",
        email=email,
        code=code,
        transaction=f"HPL{tag.upper()}2",
        at=now - timedelta(days=4),  # paid before the grace deadline ...
        next_charge=now + timedelta(days=20),
        rec=2,
    )
    stack.post_webhook(first)
    wait_for(lambda: _courses_of(stack, email) == SUB_COURSES, "the first payment to enroll", 60)
    stack.post_webhook(overdue)
    # ... but the suspension is decided first (the grace period is over when the notice arrives; the
    # worker's sweep runs every 5 s): suspended, courses removed.
    wait_for(lambda: (_subscription_state(stack, code) or {}).get("state") == "suspended", "the sweep", 60)
    wait_for(lambda: _courses_of(stack, email) == set(), "the suspension to remove the courses", 60)

    stack.post_webhook(renewal)
    wait_for(lambda: (_subscription_state(stack, code) or {}).get("state") == "active", "the restoration", 60)
    wait_for(lambda: _courses_of(stack, email) == SUB_COURSES, "the late renewal to re-enroll", 60)
    history = _subscription_state(stack, code)["history"]
    suspended, restored = history[-2], history[-1]
    assert (suspended["to"], restored["to"]) == ("suspended", "active")
    assert restored["at"] < suspended["at"]  # business times: the payment came before the deadline

    stack.post_webhook({**overdue, "id": str(uuid.uuid4())})  # Hotmart resends the old notice
    requests.post(
        f"{stack.urls['subscription']}/tasks/sweep", headers=stack.admin, timeout=10
    ).raise_for_status()
    time.sleep(6)  # past the worker's next sweep, the relay and the dispatcher
    assert _subscription_state(stack, code)["state"] == "active"
    assert _courses_of(stack, email) == SUB_COURSES


def _parked_fixed_term_sale(stack: Stack, tag: str) -> None:
    now = datetime.now(UTC)
    expired_email, running_email = f"term.over.{tag}@example.com", f"term.running.{tag}@example.com"
    stack.post_webhook(
        _one_off_webhook(
            email=expired_email,
            transaction=f"HPT{tag.upper()}1",
            product=TERM_PRODUCT,
            at=now - timedelta(days=40),
        )
    )
    stack.post_webhook(
        _one_off_webhook(
            email=running_email,
            transaction=f"HPT{tag.upper()}2",
            product=TERM_PRODUCT,
            at=now - timedelta(days=5),
        )
    )
    wait_for(
        lambda: {expired_email, running_email} <= {p.get("email") for p in stack.parked()},
        "the sales parked",
        60,
    )
    response = requests.put(
        f"{stack.urls['enrollment']}/admin/products/{TERM_PRODUCT}",
        json={"course_ids": ["12"], "access_days": 30},
        headers=stack.admin,
        timeout=10,
    )
    assert response.status_code in (200, 201), response.text
    wait_for(lambda: _courses_of(stack, running_email) == {"12"}, "the running term to enroll", 60)
    wait_for(lambda: _source_state(stack, expired_email) == "inactive", "the ended term to be expired", 60)
    wait_for(lambda: _courses_of(stack, expired_email) == set(), "the ended term's course to be gone", 60)
    time.sleep(3)  # and it stays so
    assert _courses_of(stack, expired_email) == set()
    assert _courses_of(stack, running_email) == {"12"}
    assert _source_state(stack, running_email) == "active"


def _source_state(stack: Stack, email: str) -> str | None:
    response = requests.get(
        f"{stack.urls['enrollment']}/students/{email}/enrollments", headers=stack.admin, timeout=10
    )
    response.raise_for_status()
    sources = response.json().get("sources") or []
    return sources[0]["state"] if len(sources) == 1 else None


def _scenario(stack: Stack) -> None:
    stack.map_products({"4711": sorted(SUB_COURSES)})
    tag = uuid.uuid4().hex[:6]
    _late_renewal(stack, tag)
    _parked_fixed_term_sale(stack, tag)
    dead = [name for name, alive in stack.alive().items() if not alive]
    assert dead == [], f"processes died: {dead}"


def test_access_time_faults_on_the_embedded_backend(tmp_path: Path) -> None:
    with Stack(tmp_path, backend="embedded", subscription=True, fast_topology=True) as stack:
        try:
            _scenario(stack)
        except BaseException:
            print(stack.logs(4000))
            raise


def test_access_time_faults_on_the_emulators(
    tmp_path: Path, pubsub_emulator, firestore_emulator, gcp_project
) -> None:
    stack = Stack(
        tmp_path,
        backend="gcp",
        project=gcp_project,
        pubsub_host=pubsub_emulator.host,
        firestore_host=firestore_emulator.host,
        subscription=True,
        fast_topology=True,
    )
    with stack:
        try:
            _scenario(stack)
        except BaseException:
            print(stack.logs(4000))
            raise
