"""One buyer across the services: a timeline in time order and, per course, why access is what it is.

Pure functions over what the services' admin APIs answered (plain dicts): no I/O, so every sentence the
operator reads is tested without a running stack. Each service stays the authority on its part — this
only puts their answers side by side and words them plainly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

QueryKind = Literal["email", "transaction", "subscriber_code"]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRANSACTION = re.compile(r"^(HP|TX|HT)[A-Z0-9_-]{3,}$", re.IGNORECASE)


def classify(query: str) -> QueryKind:
    """An e-mail has an @; Hotmart transactions start with HP (also TX/HT in older exports); anything
    else is taken as a subscriber code."""
    text = query.strip()
    if _EMAIL.match(text):
        return "email"
    if _TRANSACTION.match(text):
        return "transaction"
    return "subscriber_code"


@dataclass(frozen=True)
class Action:
    """A button: ``kind`` is one of resync, reprocess, replay, discard; ``target`` what it acts on."""

    kind: str
    label: str
    target: str
    service: str = ""


@dataclass(frozen=True)
class Entry:
    at: str
    service: str
    title: str
    detail: str = ""
    tone: str = "info"  # info | good | warn | bad
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class CourseLine:
    email: str
    course_id: str
    course_name: str
    status: str
    reason: str
    link: str | None = None
    actions: tuple[Action, ...] = ()


@dataclass
class BuyerView:
    query: str
    kind: QueryKind
    emails: list[str] = field(default_factory=list)
    courses: list[CourseLine] = field(default_factory=list)
    parked: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[Entry] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.timeline or self.courses or self.parked)


def short_time(text: str | None) -> str:
    """``2026-03-02T10:02:11.123Z`` → ``2 Mar 10:02`` (UTC), as an operator reads it."""
    moment = _parse(text)
    if moment is None:
        return text or ""
    return f"{moment.day} {moment.strftime('%b %H:%M')}"


def short_day(text: str | None) -> str:
    moment = _parse(text)
    return f"{moment.day} {moment.strftime('%b %Y')}" if moment else (text or "")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def eta_words(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _subscription_note(access: dict[str, Any]) -> str:
    state = access.get("state")
    if state == "past_due" and access.get("grace_until"):
        return f"payment overdue: grace until {short_day(access['grace_until'])}"
    if state == "cancelled" and access.get("ends_at"):
        return f"cancelled: access until {short_day(access['ends_at'])}"
    if state in ("suspended", "expired"):
        last = (access.get("history") or [{}])[-1]
        return (
            f"{state} on {short_day(last.get('at') or access.get('state_since'))}: {last.get('reason', '')}"
        )
    return ""


def course_lines(
    email: str,
    view: dict[str, Any],
    accesses: list[dict[str, Any]],
    course_names: dict[str, str],
) -> list[CourseLine]:
    """Enrollment's status and reason per course, with the subscription's words when a subscription
    grants it (grace, cancelled until…), and the fix that applies."""
    by_access = {a.get("access_id"): a for a in accesses}
    lines = []
    for course in view.get("enrollments") or []:
        reason = course.get("reason") or ""
        notes = [_subscription_note(by_access[g]) for g in course.get("granted_by") or [] if g in by_access]
        notes = [n for n in notes if n]
        if notes:
            reason = f"{reason}; {'; '.join(notes)}"
        actions: tuple[Action, ...] = ()
        if course.get("status") in ("failed", "blocked", "in_doubt", "pending", "revoked"):
            label = "Retry" if course.get("status") == "failed" else "Resync"
            actions = (Action("resync", label, email, "enrollment"),)
        lines.append(
            CourseLine(
                email=email,
                course_id=str(course.get("course_id")),
                course_name=course_names.get(str(course.get("course_id")), ""),
                status=str(course.get("status")),
                reason=reason,
                link=course.get("link"),
                actions=actions,
            )
        )
    return lines


def timeline(
    *,
    ingest: dict[str, Any] | None,
    students: dict[str, dict[str, Any]],
    accesses: list[dict[str, Any]],
    deadletters: list[dict[str, Any]],
    payments: list[dict[str, Any]] | None = None,
) -> list[Entry]:
    """Everything that happened to this buyer, oldest first, each line from the service that knows it."""
    entries: list[Entry] = []
    for webhook in (ingest or {}).get("webhooks") or []:
        status = webhook.get("status") or "?"
        entries.append(
            Entry(
                at=webhook.get("received_at") or "",
                service="ingest",
                title=f"Hotmart {webhook.get('hotmart_event')} received",
                detail=f"{status}"
                + (f", transaction {webhook['transaction']}" if webhook.get("transaction") else ""),
                tone="good" if status == "published" else "info",
            )
        )
    for item in (ingest or {}).get("quarantine") or []:
        waiting = (item.get("status") or "quarantined") == "quarantined"
        entries.append(
            Entry(
                at=item.get("received_at") or "",
                service="ingest",
                title="Quarantined webhook"
                + (f" {item['hotmart_event']}" if item.get("hotmart_event") else ""),
                detail=(item.get("reason") or "") if waiting else f"reprocessed: {item.get('outcome')}",
                tone="bad" if waiting else "info",
                actions=(Action("reprocess", "Reprocess", item["id"], "ingest"),) if waiting else (),
            )
        )
    for email, view in students.items():
        for source in view.get("sources") or []:
            state = source.get("state")
            words = {
                "active": "access active",
                "revoked": f"access revoked ({source.get('reason')})",
                "inactive": f"access suspended ({source.get('reason')})",
                "pending": "access pending",
            }.get(state, str(state))
            entries.append(
                Entry(
                    at=source.get("changed_at") or "",
                    service="enrollment",
                    title=f"{source.get('access_id')}: {words}",
                    detail=f"product {source.get('product_id')}",
                    tone="good" if state == "active" else "warn" if state == "pending" else "bad",
                )
            )
        for parked in view.get("parked") or []:
            entries.append(
                Entry(
                    at=parked.get("since") or "",
                    service="enrollment",
                    title=f"Parked: product {parked.get('product_id')} not mapped since "
                    f"{short_time(parked.get('since'))}",
                    detail="map the product (Products page) to grant its courses",
                    tone="bad",
                )
            )
        queue = view.get("queue")
        if queue:
            eta = eta_words(queue.get("eta_seconds"))
            entries.append(
                Entry(
                    at=queue.get("since") or "",
                    service="enrollment",
                    title=f"Queued for TalentLMS ({queue.get('lane')}), position {queue.get('position')}"
                    + (f", ETA {eta}" if eta else ""),
                    detail=f"last error: {queue['last_error']}" if queue.get("last_error") else "",
                    tone="warn",
                    actions=(Action("resync", "Resync", email, "enrollment"),),
                )
            )
    for access in accesses:
        for step in access.get("history") or []:
            entries.append(
                Entry(
                    at=step.get("at") or "",
                    service="subscription",
                    title=f"{access.get('access_id')}: {step.get('from') or 'new'} → {step.get('to')}",
                    detail=step.get("reason") or "",
                    tone="good" if step.get("to") == "active" else "warn",
                )
            )
    for payment in payments or []:
        kind = str(payment.get("kind") or "payment").replace("_", " ")
        price = payment.get("price")
        amount = (
            f"{price:.2f} {payment.get('currency') or ''}".strip() if isinstance(price, int | float) else ""
        )
        entries.append(
            Entry(
                at=str(payment.get("occurred_at") or ""),
                service="analytics",
                title=f"Recorded {kind}" + (f": {amount}" if amount else ""),
                detail=f"transaction {payment.get('transaction')}"
                + (f", charge {payment['recurrence_number']}" if payment.get("recurrence_number") else ""),
                tone="bad" if kind.endswith(("refunded", "chargeback")) else "info",
            )
        )
    for letter in deadletters:
        entries.append(
            Entry(
                at=letter.get("first_failure_at") or "",
                service=str(letter.get("service") or ""),
                title=f"Dead letter in {letter.get('subscription')}: {letter.get('event_type')}",
                detail=letter.get("reason") or "",
                tone="bad",
                actions=(
                    Action("replay", "Replay", letter["id"], str(letter.get("service"))),
                    Action("discard", "Discard", letter["id"], str(letter.get("service"))),
                ),
            )
        )
    return sorted(entries, key=lambda e: (e.at or "9999", e.service, e.title))


def letters_of(
    letters: list[dict[str, Any]], transactions: set[str], subscriber_codes: set[str]
) -> list[dict[str, Any]]:
    """The held dead letters that concern this buyer (by the ids the letters carry)."""
    return [
        letter
        for letter in letters
        if (letter.get("transaction") and letter["transaction"] in transactions)
        or (letter.get("subscriber_code") and letter["subscriber_code"] in subscriber_codes)
    ]
