"""Convergence under TalentLMS's own faults, through real processes, on both backends.

A launch of purchases arrives as webhooks while the dispatcher works in batches, and then:

- the enrollment worker is **kill -9**'d in the middle of a batch and restarted (embedded run: the TalentLMS
  work lost with the process is found again in the store, not on the bus; see the emulator run's note);
- TalentLMS **acts and then answers 500**, and **acts and answers after the client's timeout**;
- the **API key is rejected for 60 s** while refunds arrive: the dispatcher pauses, nothing is failed, and it
  resumes by itself;
- an administrator **deletes a user** in TalentLMS: the drift audit notices, the user is created again and
  re-enrolled;
- a course is **removed from a mapping**: every student of that product loses it.

In the end TalentLMS must equal the model: paid ⇒ enrolled, refunded ⇒ not, one TalentLMS user per buyer.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from stack_harness import Purchases, Stack, lms_pairs, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

PURCHASES = 80
KEY_REJECTED_SECONDS = 60
ACK_FLUSH_SECONDS = 3.0


def _enrollment(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method, stack.urls["enrollment"] + path, headers=stack.admin, timeout=10, **kwargs
    )


def _fake(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    response = requests.request(method, stack.urls["fake"] + path, timeout=10, **kwargs)
    assert response.ok, response.text
    return response


def _batch_calls(stack: Stack) -> int:
    calls = stack.fake_state()["calls"]
    return sum(n for name, n in calls.items() if "batch" in name)


def _all_known(stack: Stack, purchases: Purchases) -> bool:
    return all(
        _enrollment(stack, "GET", f"/students/{p.email}/enrollments").json()["email_known"]
        for p in purchases.items
    )


def _expected(purchases: Purchases, mappings: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {(p.email, c) for p in purchases.items if p.refund is None for c in mappings.get(p.product, [])}


LAST_SEEN: dict[str, Any] = {}


def _converged(stack: Stack, expected: set[tuple[str, str]]) -> bool:
    queue = _enrollment(stack, "GET", "/admin/lms/queue").json()
    pairs = lms_pairs(stack.fake_state())
    LAST_SEEN.update(queue=queue, extra=sorted(pairs - expected)[:5], missing=sorted(expected - pairs)[:5])
    return pairs == expected and queue.get("depth_now") == 0


def _wait_converged(stack: Stack, expected: set[tuple[str, str]], what: str, timeout: float) -> None:
    try:
        wait_for(lambda: _converged(stack, expected), what, timeout)
    except AssertionError:
        for email, _course in [*LAST_SEEN.get("extra", []), *LAST_SEEN.get("missing", [])][:3]:
            view = _enrollment(stack, "GET", f"/students/{email}/enrollments").json()
            print("student", view.get("enrollments"), view.get("queue"), view.get("in_doubt"))
        raise AssertionError(f"not converged ({what}): {LAST_SEEN}") from None


def _scenario(stack: Stack, *, kill_mid_batch: bool = True) -> None:
    stack.map_products()
    purchases = Purchases(PURCHASES, refund_every=5, unmapped_every=10_000)

    # A launch: every approval at once while TalentLMS refuses the key, so the backlog forms; once every
    # approval is decided (nothing left in flight on the bus: the Pub/Sub emulator, unlike Pub/Sub, never
    # hands a killed subscriber's in-flight ordering keys to anyone else), the key works again, the
    # dispatcher batches, and is killed in the middle of a batch.
    _fake(stack, "POST", "/_fake/auth", json={"reject_seconds": 600})
    _fake(stack, "POST", "/_fake/tasks", json={"delay_seconds": 1.5})
    for purchase in purchases.items:
        stack.post_webhook(purchase.approval)
    wait_for(lambda: _all_known(stack, purchases), "every approval to be decided", 90)
    # The Pub/Sub client sends acks in batches shortly after the handlers return: let the last go out, or
    # the emulator keeps those keys on the killed stream for good (Pub/Sub redelivers after the deadline).
    time.sleep(ACK_FLUSH_SECONDS)
    batches = _batch_calls(stack)
    _fake(stack, "POST", "/_fake/auth", json={"reject_seconds": 0})
    wait_for(lambda: _batch_calls(stack) > batches, "a batch call", 60, interval=0.05)
    if kill_mid_batch:
        stack.kill("enrollment-worker")
        stack.start_process("enrollment-worker")

    # TalentLMS acts, then the answer is lost (500, or after the client's 2 s timeout).
    stack.set_lms_failure("acted_500", count=3)
    wait_for(lambda: stack.fake_state()["failure"]["mode"] == "none", "the 500s to be used up", 90)
    stack.set_lms_failure("slow", seconds=2.5, count=2)
    wait_for(lambda: stack.fake_state()["failure"]["mode"] == "none", "the slow answers to pass", 90)
    mappings = {"4711": ["7", "9"], "4712": ["12"]}
    _wait_converged(stack, _expected_without_refunds(purchases, mappings), "the launch", 120)

    # The key is rejected for a minute while refunds arrive: paused, never failed, resumed by itself.
    _fake(stack, "POST", "/_fake/auth", json={"reject_seconds": KEY_REJECTED_SECONDS})
    rejected_at = time.monotonic()
    for purchase in purchases.items:
        if purchase.refund is not None:
            stack.post_webhook(purchase.refund)
    wait_for(lambda: _enrollment(stack, "GET", "/admin/lms/queue").json().get("paused"), "the pause", 30)
    assert _enrollment(stack, "GET", "/admin/students/failed").json()["students"] == []
    _wait_converged(stack, _expected(purchases, mappings), "the refunds after the pause", 150)
    assert time.monotonic() - rejected_at >= KEY_REJECTED_SECONDS - 1
    assert not _enrollment(stack, "GET", "/admin/lms/queue").json().get("paused")

    # An administrator deletes a paying student's user; the drift audit finds the missing courses.
    keeper = next(p for p in purchases.items if p.refund is None and p.product == "4711")
    user_id = next(u["id"] for u in stack.fake_state()["users"] if u["email"].lower() == keeper.email)
    _fake(stack, "DELETE", f"/_fake/users/{user_id}")
    assert _enrollment(stack, "POST", "/admin/audit").status_code == 202
    _wait_converged(stack, _expected(purchases, mappings), "the deleted user to be repaired", 90)
    report = _enrollment(stack, "GET", "/admin/audit/last").json()
    assert report["counts"]["missing"] >= 1

    # A course is removed from a mapping: everyone who bought 4711 loses course 9.
    mappings["4711"] = ["7"]
    assert _enrollment(stack, "PUT", "/admin/products/4711", json={"course_ids": ["7"]}).status_code == 200
    _wait_converged(stack, _expected(purchases, mappings), "course 9 to be removed", 90)

    state = stack.fake_state()
    emails = Counter(user["email"].lower() for user in state["users"])
    assert [e for e, n in emails.items() if n > 1] == [], "one TalentLMS user per buyer"
    dead = [name for name, alive in stack.alive().items() if not alive]
    assert dead == [], f"processes died: {dead}"
    print(f"calls={state['calls']} rejected={state['rejected']}")


def _expected_without_refunds(purchases: Purchases, mappings: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {(p.email, c) for p in purchases.items for c in mappings.get(p.product, [])}


FAULT_ENV = {"ENROLLMENT_BATCH_THRESHOLD": "20", "ENROLLMENT_AUDIT_INTERVAL_SECONDS": "0"}


def test_convergence_faults_on_the_embedded_backend(tmp_path: Path) -> None:
    with Stack(tmp_path, backend="embedded", fast_topology=True, extra_env=FAULT_ENV) as stack:
        try:
            _scenario(stack)
        except BaseException:
            print(stack.logs(4000))
            raise


def test_convergence_faults_on_the_emulators(
    tmp_path: Path, pubsub_emulator, firestore_emulator, gcp_project
) -> None:
    stack = Stack(
        tmp_path,
        backend="gcp",
        project=gcp_project,
        pubsub_host=pubsub_emulator.host,
        firestore_host=firestore_emulator.host,
        fast_topology=True,
        extra_env=FAULT_ENV,
    )
    with stack:
        try:
            # No kill -9 here: the Pub/Sub emulator (unlike Pub/Sub) keeps routing an ordering key's later
            # messages to a subscriber stream that died, even on an unordered subscription, so refunds
            # published after the kill were never delivered in 1 run of 4. The embedded run kills the
            # worker mid-batch; this run keeps every other fault.
            _scenario(stack, kill_mid_batch=False)
        except BaseException:
            print(stack.logs(4000))
            raise
