"""Access sources: what pays for access, merged from events in any order. Pure functions, no I/O.

An **access source** is one thing that pays for access: a subscription of one product
(``sub:<subscriber code>:<product id>``) or a one-off purchase (``tx:<transaction>``). Its state is derived
from what the signals say, never from their arrival order:

- ``revoked``  — a refund or chargeback was seen (terminal: a late approval cannot undo it);
- else, once the subscription service has published a *versioned* decision on the access (an access event
  with ``version`` >= 1), the decision with the **highest version** says ``active`` or ``inactive``. The
  subscription service is the authority on its accesses and the version is its own change counter, so a
  restoration decided after a suspension wins even when its business time (``effective_at``) is older —
  a renewal paid before the grace deadline but processed after the sweep;
- else (no access event yet, or only old events without a version, which count as version 0) the event
  times decide: ``active`` when the latest activation (approval, complete, restored) is newer than the
  latest deactivation (suspended, expired), ``inactive`` when the deactivation is at least as new (ties
  deactivate), ``pending`` when nothing granted yet (e.g. a suspension delivered before the approval).

Every field only moves by ``max`` (latest time wins; the highest ``(version, time, state, reason)`` for
the decision) or is set once (revocation), so applying a set of signals in any order, any number of times,
gives the same source: the merge is commutative and idempotent.

Desired courses are *computed* from the active sources and the current product mapping
(``enrollment.domain.desired``); nothing about courses is accumulated here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

SignalKind = Literal["grant", "revoke", "deactivate", "reactivate", "plan_change"]
SourceState = Literal["active", "inactive", "revoked", "pending"]

# Hotmart purchase kinds the saga acts on. Every other kind is ignored here; in particular
# ``purchase_protest`` (a dispute or refund *request*) keeps access until the refund itself arrives.
GRANTING_KINDS = frozenset({"purchase_approved", "purchase_complete"})
REVOKING_KINDS = {"purchase_refunded": "purchase refunded", "purchase_chargeback": "purchase charged back"}
# access states (subscription service) under which the student keeps the courses
GRANTING_ACCESS_STATES = frozenset({"active", "past_due", "cancelled"})


@dataclass(frozen=True)
class Signal:
    """One event's meaning for one access source. ``at`` is the event time (RFC 3339, milliseconds, UTC)."""

    kind: SignalKind
    access_id: str
    at: str
    event_id: str
    reason: str
    product_id: str | None = None
    transaction: str | None = None
    plan_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    # access events only: the subscription service's per-access change counter (0: an event without one)
    # and the access state it announces (``active``, ``past_due``, ``cancelled``, ``suspended``, ``expired``)
    version: int | None = None
    access_state: str | None = None

    @property
    def decision(self) -> tuple[int, str, str, str] | None:
        """The versioned decision this signal carries, as the key it is merged by (highest wins)."""
        if not self.version or self.access_state is None:
            return None
        verdict = "active" if self.access_state in GRANTING_ACCESS_STATES else "inactive"
        return (self.version, self.at, verdict, self.reason)


def _later(current: str | None, candidate: str | None) -> str | None:
    if candidate is None:
        return current
    if current is None or candidate > current:
        return candidate
    return current


def _pick(
    current: tuple[str | None, str | None], at: str, value: str | None
) -> tuple[str | None, str | None]:
    """(time, value) of the latest signal; on a time tie the larger value wins, so the merge commutes."""
    current_at, current_value = current
    if value is None:
        return current
    if current_at is None or at > current_at or (at == current_at and value > (current_value or "")):
        return at, value
    return current


def _precedes(revocation: tuple[str, str], source: AccessSource) -> bool:
    if source.revoked_at is None:
        return True
    return revocation < (source.revoked_at, source.revoke_reason or "")


@dataclass(frozen=True)
class AccessSource:
    access_id: str
    activated_at: str | None = None
    deactivated_at: str | None = None
    revoked_at: str | None = None
    revoke_reason: str | None = None
    deactivate_reason: str | None = None
    product_id: str | None = None
    transaction_at: str | None = None
    transaction: str | None = None
    plan_at: str | None = None
    plan_id: str | None = None
    # the subscription service's latest versioned decision: it decides once there is one
    decided_version: int | None = None
    decided_at: str | None = None
    decided_state: str | None = None  # "active" | "inactive"
    decided_reason: str | None = None

    @property
    def decision(self) -> tuple[int, str, str, str] | None:
        if self.decided_version is None:
            return None
        return (
            self.decided_version,
            self.decided_at or "",
            self.decided_state or "",
            self.decided_reason or "",
        )

    @property
    def state(self) -> SourceState:
        if self.revoked_at is not None:
            return "revoked"
        if self.decided_version is not None:
            return "active" if self.decided_state == "active" else "inactive"
        if self.activated_at is None:
            return "inactive" if self.deactivated_at is not None else "pending"
        if self.deactivated_at is not None and self.deactivated_at >= self.activated_at:
            return "inactive"
        return "active"

    @property
    def active(self) -> bool:
        return self.state == "active"

    @property
    def changed_at(self) -> str | None:
        """Event time of the change that decided the current state."""
        state = self.state
        if state == "revoked":
            return self.revoked_at
        if self.decided_version is not None:
            return self.decided_at
        if state == "inactive":
            return self.deactivated_at
        return self.activated_at

    @property
    def reason(self) -> str | None:
        state = self.state
        if state == "revoked":
            return self.revoke_reason
        if state == "inactive":
            return self.decided_reason if self.decided_version is not None else self.deactivate_reason
        return None

    def apply(self, signal: Signal) -> AccessSource:
        if signal.access_id != self.access_id:
            raise ValueError("signal for another access source")
        source = self
        if signal.product_id and not source.product_id:
            source = replace(source, product_id=signal.product_id)
        transaction_at, transaction = _pick(
            (source.transaction_at, source.transaction), signal.at, signal.transaction
        )
        plan_at, plan_id = _pick((source.plan_at, source.plan_id), signal.at, signal.plan_id)
        source = replace(
            source, transaction_at=transaction_at, transaction=transaction, plan_at=plan_at, plan_id=plan_id
        )
        if signal.kind in ("grant", "reactivate"):
            source = replace(source, activated_at=_later(source.activated_at, signal.at))
        elif signal.kind == "deactivate":
            at, reason = _pick((source.deactivated_at, source.deactivate_reason), signal.at, signal.reason)
            source = replace(source, deactivated_at=at, deactivate_reason=reason)
        elif signal.kind == "revoke" and _precedes((signal.at, signal.reason), source):
            # Terminal: the earliest refund/chargeback is kept, whatever arrives later.
            source = replace(source, revoked_at=signal.at, revoke_reason=signal.reason)
        decision = signal.decision
        if decision is not None and (source.decision is None or decision > source.decision):
            version, at, verdict, reason = decision
            source = replace(
                source, decided_version=version, decided_at=at, decided_state=verdict, decided_reason=reason
            )
        return source

    def view(self) -> dict[str, Any]:
        """What an entitlement keeps of the source (stored JSON)."""
        return {
            "state": self.state,
            "changed_at": self.changed_at,
            "reason": self.reason,
            "product_id": self.product_id,
            "transaction": self.transaction,
            "plan_id": self.plan_id,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccessSource:
        return cls(**{key: data.get(key) for key in cls.__dataclass_fields__})


def apply_all(access_id: str, signals: list[Signal]) -> AccessSource:
    source = AccessSource(access_id)
    for signal in signals:
        source = source.apply(signal)
    return source
