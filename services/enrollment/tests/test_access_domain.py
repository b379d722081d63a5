"""The saga's pure state machine: access sources, entitlements, signals; with Hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrollment.domain.access import AccessSource, Signal, apply_all
from enrollment.domain.ids import access_id_for, entitlement_id, is_valid_email, normalise_email
from enrollment.domain.mapping import InvalidMapping, parse_mapping
from enrollment.domain.signals import access_signal, payment_signal

ACCESS = "sub:SUB-1:4711"

# event name -> signal kind and reason, as the adapters in domain.signals produce them
KINDS = {
    "approve": ("grant", "purchase approved"),
    "renew": ("grant", "purchase approved"),
    "complete": ("grant", "purchase complete"),
    "refund": ("revoke", "purchase refunded"),
    "chargeback": ("revoke", "purchase charged back"),
    "suspend": ("deactivate", "access suspended: overdue"),
    "expire": ("deactivate", "access expired: cancelled"),
    "restore": ("reactivate", "access active: renewal approved"),
}


def at(second: int) -> str:
    return f"2025-03-01T10:{second // 60:02d}:{second % 60:02d}.000Z"


def signal(name: str, second: int, access_id: str = ACCESS, event_id: str | None = None) -> Signal:
    kind, reason = KINDS[name]
    return Signal(
        kind=kind,  # type: ignore[arg-type]
        access_id=access_id,
        at=at(second),
        event_id=event_id or f"{name}-{second}",
        reason=reason,
        product_id="4711",
        transaction="HP1",
        email="ana@example.com",
    )


def model_active(events: list[tuple[str, int]]) -> bool:
    """The simple model: never after a refund/chargeback; else the latest of activations and
    deactivations decides (a tie deactivates); nothing active without an activation."""
    if any(KINDS[name][0] == "revoke" for name, _ in events):
        return False
    activations = [t for name, t in events if KINDS[name][0] in ("grant", "reactivate")]
    deactivations = [t for name, t in events if KINDS[name][0] == "deactivate"]
    if not activations:
        return False
    return not deactivations or max(activations) > max(deactivations)


# one purchase's history: distinct events (name, event time), then delivered permuted and duplicated
histories = st.lists(
    st.tuples(st.sampled_from(sorted(KINDS)), st.integers(min_value=0, max_value=300)),
    min_size=1,
    max_size=8,
    unique=True,
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    history = draw(histories)
    duplicated = history + draw(st.lists(st.sampled_from(history), max_size=6))
    return history, draw(st.permutations(duplicated))


@settings(max_examples=400, deadline=None)
@given(deliveries())
def test_any_order_and_duplication_reaches_the_models_state(case) -> None:
    history, delivered = case
    in_order = apply_all(ACCESS, [signal(n, t) for n, t in history])
    shuffled = apply_all(ACCESS, [signal(n, t) for n, t in delivered])
    assert shuffled == in_order  # same source, field by field
    assert shuffled.active == model_active(history)


# versioned access events: (name, event time, version); the state each announces
VERSIONED = {
    "suspend": ("deactivate", "suspended"),
    "expire": ("deactivate", "expired"),
    "restore": ("reactivate", "active"),
    "plan": ("plan_change", "cancelled"),
}


def versioned(name: str, second: int, version: int, access_id: str = ACCESS) -> Signal:
    kind, state = VERSIONED[name]
    return Signal(
        kind=kind,  # type: ignore[arg-type]
        access_id=access_id,
        at=at(second),
        event_id=f"v{version}",
        reason=f"access {state}: {name}",
        product_id="4711",
        plan_id="101",
        email="ana@example.com",
        version=version,
        access_state=state,
    )


@st.composite
def versioned_deliveries(draw: st.DrawFn):
    """Payments (grants, refunds) and the subscription service's decisions, each decision with its own
    version (1..n, in any relation to its business time), delivered permuted and duplicated."""
    payments = draw(
        st.lists(
            st.tuples(st.sampled_from(["approve", "renew", "complete", "refund"]), st.integers(0, 300)),
            max_size=4,
            unique=True,
        )
    )
    decisions = draw(
        st.lists(st.tuples(st.sampled_from(sorted(VERSIONED)), st.integers(0, 300)), min_size=1, max_size=5)
    )
    versions = draw(st.permutations(range(1, len(decisions) + 1)))
    signals = [signal(n, t) for n, t in payments] + [
        versioned(n, t, v) for (n, t), v in zip(decisions, versions, strict=True)
    ]
    duplicated = signals + draw(st.lists(st.sampled_from(signals), max_size=5))
    return payments, list(zip(decisions, versions, strict=True)), signals, draw(st.permutations(duplicated))


@settings(max_examples=400, deadline=None)
@given(versioned_deliveries())
def test_the_highest_version_decides_in_any_order_unless_refunded(case) -> None:
    payments, decisions, signals, delivered = case
    in_order = apply_all(ACCESS, signals)
    shuffled = apply_all(ACCESS, delivered)
    assert shuffled == in_order
    (latest, _), _ = max(decisions, key=lambda d: d[1])
    refunded = any(name == "refund" for name, _ in payments)
    assert shuffled.active == (not refunded and VERSIONED[latest][1] in ("active", "cancelled"))
    assert shuffled.state == ("revoked" if refunded else "active" if shuffled.active else "inactive")


def test_a_restoration_with_an_older_business_time_but_a_higher_version_wins() -> None:
    """A renewal paid on day 36 (before the grace deadline, day 37) but processed after the sweep."""
    suspended = versioned("suspend", 37, 1)
    restored = versioned("restore", 36, 2)
    for order in ([suspended, restored], [restored, suspended]):
        source = apply_all(ACCESS, [signal("approve", 0), *order])
        assert source.active and source.changed_at == at(36)
    # without versions (an older producer) the event times still decide, as before
    legacy = [signal("approve", 0), signal("suspend", 37), signal("restore", 36)]
    assert apply_all(ACCESS, legacy).state == "inactive"


def test_a_payment_grant_does_not_override_a_versioned_suspension() -> None:
    source = apply_all(ACCESS, [signal("approve", 0), versioned("suspend", 37, 1), signal("renew", 40)])
    assert source.state == "inactive" and source.reason == "access suspended: suspend"
    assert source.apply(versioned("restore", 40, 2)).active


def test_a_fixed_term_expiry_is_not_undone_by_a_later_completion() -> None:
    tx = "tx:HP1"
    source = apply_all(
        tx, [signal("approve", 0, tx), versioned("expire", 30, 1, tx), signal("complete", 60, tx)]
    )
    assert source.state == "inactive"


def test_refund_before_approval_blocks_the_late_approval() -> None:
    source = apply_all(ACCESS, [signal("refund", 50), signal("approve", 10)])
    assert source.state == "revoked"
    assert source.reason == "purchase refunded"


def test_restore_only_reactivates_when_newer_than_the_suspension() -> None:
    assert apply_all(ACCESS, [signal("approve", 1), signal("suspend", 20), signal("restore", 10)]).state == (
        "inactive"
    )
    assert apply_all(ACCESS, [signal("approve", 1), signal("restore", 30), signal("suspend", 20)]).active


def test_a_renewal_after_a_suspension_reactivates() -> None:
    assert apply_all(ACCESS, [signal("approve", 1), signal("suspend", 20), signal("renew", 40)]).active


def test_suspension_before_any_approval_is_remembered() -> None:
    source = apply_all(ACCESS, [signal("suspend", 20)])
    assert source.state == "inactive"
    assert source.apply(signal("approve", 10)).state == "inactive"
    assert source.apply(signal("approve", 30)).active


def test_source_json_roundtrip() -> None:
    source = apply_all(ACCESS, [signal("approve", 1), signal("suspend", 2)])
    assert AccessSource.from_json(source.to_json()) == source


def test_ids() -> None:
    assert access_id_for("HP1", "SUB-1", "4711") == "sub:SUB-1:4711"
    assert access_id_for("HP1", None, "4711") == "tx:HP1"
    assert access_id_for(None, None, "4711") is None
    assert entitlement_id("Ana@Example.com", "7") == entitlement_id("ana@example.com", "7")
    assert "ana" not in entitlement_id("ana@example.com", "7")
    assert normalise_email(" Ana@Example.COM ") == "ana@example.com"
    assert is_valid_email("ana.souza+x@example.com")
    for bad in ("ana", "ana@", "@example.com", "ana@example", "a b@example.com", "x" * 400 + "@example.com"):
        assert not is_valid_email(bad)


def _payment(kind: str, **overrides) -> dict:
    data = {
        "kind": kind,
        "occurred_at": at(5),
        "transaction": "HP1",
        "product": {"id": "4711", "ucode": None, "name": "Academy"},
        "buyer": {"email": "Ana@Example.com", "name": "Ana Souza", "first_name": None, "last_name": None},
        "subscription": {"subscriber_code": "SUB-1", "plan": {"id": "101", "name": "Monthly"}},
    }
    data.update(overrides)
    return data


def test_payment_signals() -> None:
    grant = payment_signal("e1", _payment("purchase_approved"))
    assert grant is not None
    assert (grant.kind, grant.access_id, grant.plan_id, grant.email) == (
        "grant",
        "sub:SUB-1:4711",
        "101",
        "ana@example.com",
    )
    assert (grant.first_name, grant.last_name) == ("Ana", "Souza")
    refund = payment_signal("e2", _payment("purchase_chargeback", subscription=None))
    assert refund is not None
    assert (refund.kind, refund.access_id, refund.reason) == ("revoke", "tx:HP1", "purchase charged back")
    for ignored in ("purchase_protest", "purchase_delayed", "purchase_canceled", "switch_plan"):
        assert payment_signal("e3", _payment(ignored)) is None


def test_access_signals() -> None:
    data = {
        "access_id": "sub:SUB-1:4711",
        "product_id": "4711",
        "plan_id": "101",
        "transaction": None,
        "email": None,
        "state": "suspended",
        "reason": "overdue",
        "effective_at": at(9),
    }
    suspended = access_signal("coursebridge.subscription.access_suspended.v1", "e", data)
    assert suspended is not None
    assert (suspended.kind, suspended.reason) == ("deactivate", "access suspended: overdue")
    assert (suspended.version, suspended.decision) == (0, None)  # no version: the event times decide
    restored = access_signal(
        "coursebridge.subscription.access_restored.v1", "e", {**data, "state": "past_due", "version": 4}
    )
    assert restored is not None
    assert restored.decision == (4, at(9), "active", "access past_due: overdue")
    assert access_signal("coursebridge.subscription.unknown.v1", "e", data) is None


def test_mapping_parsing() -> None:
    mapping = parse_mapping("4711", {"course_ids": ["7", 9], "plans": {"101": ["7"]}, "access_days": None})
    assert mapping.course_ids == ("7", "9")
    assert mapping.courses_for("101") == ("7",)
    assert mapping.courses_for("999") == ("7", "9")
    assert mapping.courses_for(None) == ("7", "9")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({}, "course_ids is required"),
        ({"course_ids": "7"}, "must be a list"),
        ({"course_ids": ["7", "7"]}, "twice"),
        ({"course_ids": ["a b"]}, "not a course id"),
        ({"course_ids": []}, "at least one course"),
        ({"course_ids": ["7"], "plans": []}, "plans must be an object"),
        ({"course_ids": ["7"], "plans": {"101": []}}, "at least one course"),
        ({"course_ids": ["7"], "access_days": 0}, "access_days"),
        ({"course_ids": ["7"], "grace_days": "7"}, "grace_days"),
        ({"course_ids": ["7"], "colour": "blue"}, "unknown field"),
    ],
)
def test_mapping_rejects_bad_bodies(body, message) -> None:
    with pytest.raises(InvalidMapping, match=message):
        parse_mapping("4711", body)
