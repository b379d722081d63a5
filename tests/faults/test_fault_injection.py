"""Nothing lost, nothing applied twice — under faults, through real processes.

The pipeline (fake TalentLMS, ingest API + relay, enrollment API + worker) runs as real processes, on
Google's emulators and once on the embedded backend. ~30 purchases (some refunded or charged back, some
for an unmapped product) are sent as webhooks, **every webhook three times, shuffled**, while:

- the fake LMS answers slowly (the call takes effect, the answer comes after the client's timeout: the
  call is in doubt and read back) and the enrollment worker is **kill -9**'d in the middle of an LMS call
  and restarted (embedded run);
- the fake LMS is in a **429 storm**, then answers **500** for a while;
- (emulators) the **Pub/Sub emulator is stopped** while webhooks keep arriving, then restarted and
  re-provisioned (an emulator restart loses topics and subscriptions; on GCP they persist);
- (embedded) the ingest relay is kill -9'd and restarted too.

Then the final LMS state must equal the model computed from the webhooks, every (student, course) pair
must have been enrolled at most once (the fake counts successful enrolments and removals), and every
accepted webhook is accounted for: published by ingest, and granted / revoked / parked / ignored by
enrollment.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from stack_harness import Purchases, Stack, lms_pairs, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PURCHASES = 30
SETTLE_TIMEOUT = 120.0


def _deliveries(purchases: Purchases, seed: int) -> list[dict]:
    webhooks = [w for w in purchases.webhooks() for _ in range(3)]
    random.Random(seed).shuffle(webhooks)
    return webhooks


def _send(stack: Stack, webhooks: list[dict], outcomes: Counter) -> None:
    for body in webhooks:
        answer = stack.post_webhook(body)
        outcomes[answer["status"]] += 1


def _let_failure_pass(stack: Stack, timeout: float = 30.0) -> None:
    """Wait until the injected failures are used up; switch them off after ``timeout`` regardless."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and stack.fake_state()["failure"]["mode"] != "none":
        time.sleep(0.2)
    stack.set_lms_failure("none")


def _work_calls(stack: Stack) -> int:
    """TalentLMS calls that act on students (not the free quota reads or the course list)."""
    calls = stack.fake_state()["calls"]
    return sum(n for name, n in calls.items() if name not in ("ratelimit", "courses"))


def _kill_worker_mid_handling(stack: Stack, before: int) -> None:
    """Wait until the worker is inside an LMS call made since ``before`` (the fake counts a call when it
    starts, and answers slowly now), then kill -9 and restart it."""
    wait_for(
        lambda: _work_calls(stack) > before,
        "the enrollment worker to be in the middle of an LMS call",
        30,
        interval=0.05,
    )
    stack.kill("enrollment-worker")
    time.sleep(0.5)
    stack.start_process("enrollment-worker")


def _settled(stack: Stack, purchases: Purchases) -> bool:
    return lms_pairs(stack.fake_state()) >= purchases.expected() and _accounted(stack, purchases) == []


def _accounted(stack: Stack, purchases: Purchases, sent: set[str] | None = None) -> list[str]:
    """What is not (yet) accounted for among the webhooks ``sent`` (default: all); empty when every one
    has its outcome: published by ingest, then granted, revoked, parked or ignored by enrollment."""
    problems: list[str] = []
    for body in purchases.webhooks():
        if sent is not None and body["id"] not in sent:
            continue
        status = (stack.webhook_status(body["id"]) or {}).get("status")
        if status != "published":
            problems.append(f"webhook {body['id']} ({body['event']}) is {status!r}, not published")
    parked = {(p["email"], p["transaction"]) for p in stack.parked()}
    for purchase in purchases.items:
        approved = sent is None or purchase.approval["id"] in sent
        refunded = purchase.refund is not None and (sent is None or purchase.refund["id"] in sent)
        if not approved and not refunded:
            continue
        view = {e["course_id"]: e["status"] for e in stack.student(purchase.email)}
        if not purchase.courses:  # unmapped product: parked (or nothing, once refunded)
            if approved and purchase.refund is None and (purchase.email, purchase.transaction) not in parked:
                problems.append(f"{purchase.transaction}: unmapped approval not parked")
            if view:
                problems.append(f"{purchase.transaction}: unmapped product has entitlements {view}")
        elif refunded:
            bad = {c: s for c, s in view.items() if s not in ("revoked", "not_enrolled")}
            if bad or not set(view) <= set(purchase.courses):
                problems.append(f"{purchase.transaction}: refunded but {view}")
        elif view != dict.fromkeys(purchase.courses, "enrolled"):
            problems.append(f"{purchase.transaction}: expected granted {purchase.courses}, got {view}")
    return problems


def _replay_dead_letters(stack: Stack) -> str:
    """What an operator does with dead-lettered messages: the replay CLI (same CloudEvent ids)."""
    result = subprocess.run(
        [sys.executable, "-m", "enrollment.entrypoints.replay", "--subscription", "enrollment.payments"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def _check_final_state(stack: Stack, purchases: Purchases) -> None:
    try:
        try:
            wait_for(
                lambda: _settled(stack, purchases), "every webhook to reach its outcome", SETTLE_TIMEOUT / 2
            )
        except AssertionError:
            # On the emulator (no retry backoff) a storm can use up a message's 10 attempts, and a message
            # held back behind an earlier one of its key can use them up later still: it waits in the
            # dead-letter hold, not lost. Replay the hold as an operator would after an outage, again
            # whenever more arrived, until everything settled.
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while True:
                print("not settled; replaying dead letters:", _replay_dead_letters(stack))
                try:
                    wait_for(lambda: _settled(stack, purchases), "every webhook after replay", 15)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
    except AssertionError:
        problems = _accounted(stack, purchases)
        state = stack.fake_state()
        missing = purchases.expected() - lms_pairs(state)
        phases = getattr(stack, "phase_of", {})
        for purchase in purchases.items:
            ids = [purchase.approval["id"]] + ([purchase.refund["id"]] if purchase.refund else [])
            print(purchase.transaction, purchase.product, [phases.get(i) for i in ids])
        raise AssertionError(
            f"not settled: {problems[:10]} / missing in LMS: {sorted(missing)[:10]}"
        ) from None
    time.sleep(1.0)  # let any stray redelivery land before judging "nothing twice"
    state = stack.fake_state()
    expected = purchases.expected()
    assert lms_pairs(state) == expected, (
        f"LMS differs from the model: extra {sorted(lms_pairs(state) - expected)[:10]}, "
        f"missing {sorted(expected - lms_pairs(state))[:10]}"
    )
    emails = Counter(user["email"].lower() for user in state["users"])
    assert [e for e, n in emails.items() if n > 1] == [], "one LMS user per student"
    # Every pair enrolled at most once: a pair is enrolled once and, if refunded, removed once.
    possible_revoked = purchases.revoked_or_never()
    assert state["enrolled_total"] - state["unenrolled_total"] == len(expected), state
    assert state["enrolled_total"] <= len(expected) + len(possible_revoked), state
    assert state["unenrolled_total"] <= len(possible_revoked), state
    print(
        f"LMS: {len(expected)} pairs enrolled, enrolled_total={state['enrolled_total']}, "
        f"unenrolled_total={state['unenrolled_total']}, calls={state['calls']}, "
        f"rejected={state['rejected']}, errors={state['errors']}"
    )


def _run_scenario(stack: Stack, purchases: Purchases, *, pubsub=None, seed: int = 7) -> None:
    stack.map_products()
    deliveries = _deliveries(purchases, seed)
    q = len(deliveries) // 4
    phase_a, phase_b, phase_c, phase_d = (
        deliveries[:q],
        deliveries[q : 2 * q],
        deliveries[2 * q : 3 * q],
        deliveries[3 * q :],
    )
    outcomes: Counter = Counter()

    # A: a quarter of the traffic, fully processed (so an emulator restart cannot lose anything in flight).
    _send(stack, phase_a, outcomes)
    sent_a = {b["id"] for b in phase_a}
    wait_for(lambda: _accounted(stack, purchases, sent_a) == [], "the first quarter to settle", 60)

    # B: Pub/Sub goes away while webhooks keep arriving (emulators); the relay is kill -9'd (embedded).
    if pubsub is not None:
        pubsub.stop()
        _send(stack, phase_b, outcomes)
        time.sleep(2)
        new_ids = {b["id"] for b in phase_b} - sent_a
        assert new_ids, "the shuffle left no new webhook for the outage; change the seed"
        held = [(stack.webhook_status(i) or {}).get("status") for i in new_ids]
        assert set(held) == {"pending"}, f"accepted while Pub/Sub is down, and not published: {held}"
        # The restarted emulator is empty: freeze the relay (SIGSTOP, not a kill) until topics AND
        # subscriptions exist again, or it could publish into a topic with no subscription yet. On GCP
        # they persist through an outage, so this only removes an artefact of the emulator's amnesia.
        stack.kill("ingest-relay", signal.SIGSTOP, reap=False)
        try:
            pubsub.restart()
            stack.provision()
        finally:
            stack.kill("ingest-relay", signal.SIGCONT, reap=False)
    else:
        stack.kill("ingest-relay")
        _send(stack, phase_b, outcomes)
        time.sleep(0.5)
        stack.start_process("ingest-relay")

    # C: slow LMS (effect now, answer after the client's 2 s timeout) + kill -9 of the enrollment worker.
    before = _work_calls(stack)
    stack.set_lms_failure("slow", seconds=2.5, count=12)
    _send(stack, phase_c, outcomes)
    # On the embedded backend only: the Pub/Sub emulator (unlike Pub/Sub) keeps routing an ordering key's
    # later messages to a subscriber stream that died, even on enrollment's unordered subscription, so a
    # refund published after the kill can stay undelivered for good (seen in runs here).
    if pubsub is None:
        _kill_worker_mid_handling(stack, before)
    _let_failure_pass(stack, 10)

    # D: a 429 storm, then 500s. The Pub/Sub emulator ignores retry backoff (immediate redelivery), so
    # storms there are shorter: 10 attempts dead-letter a message, which GCP's backoff makes unlikely.
    stack.set_lms_failure("429", seconds=1, count=25 if pubsub is None else 12)
    _send(stack, phase_d, outcomes)
    _let_failure_pass(stack)
    stack.set_lms_failure("500", count=15 if pubsub is None else 8)

    unique = len(purchases.webhooks())
    assert outcomes["accepted"] == unique, outcomes
    assert outcomes["duplicate"] == 2 * unique, outcomes
    dead = [name for name, alive in stack.alive().items() if not alive]
    assert dead == [], f"processes died: {dead}\n{stack.logs(3000, dead)}"
    phase_of = {}
    for label, phase in zip("ABCD", (phase_a, phase_b, phase_c, phase_d), strict=True):
        for body in phase:
            phase_of.setdefault(body["id"], label)
    stack.phase_of = phase_of  # type: ignore[attr-defined]
    _check_final_state(stack, purchases)


def test_faults_on_the_emulators(tmp_path: Path, pubsub_emulator, firestore_emulator, gcp_project) -> None:
    if not getattr(pubsub_emulator, "can_restart", False):
        pytest.skip("the Pub/Sub emulator is external: this test must stop and restart it")
    purchases = Purchases(PURCHASES)
    stack = Stack(
        tmp_path,
        backend="gcp",
        project=gcp_project,
        pubsub_host=pubsub_emulator.host,
        firestore_host=firestore_emulator.host,
        fast_topology=True,
    )
    with stack:
        try:
            _run_scenario(stack, purchases, pubsub=pubsub_emulator)
        except BaseException:
            print(stack.logs(3000))
            raise


def test_faults_on_the_embedded_backend(tmp_path: Path) -> None:
    purchases = Purchases(PURCHASES)
    with Stack(tmp_path, backend="embedded", fast_topology=True) as stack:
        try:
            _run_scenario(stack, purchases, seed=11)
        except BaseException:
            print(stack.logs(3000))
            raise
