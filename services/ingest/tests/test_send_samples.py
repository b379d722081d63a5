"""``make samples`` dates the samples relative to today, so a fresh stack shows them in the default range."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from ingest.domain.hotmart import normalise
from ingest.entrypoints.send_samples import _creation_ms, load_samples, redate

TODAY = date(2027, 2, 14)


def test_redated_samples_end_yesterday_keep_their_spacing_and_still_normalise():
    original = load_samples()
    moved = redate(original, TODAY)
    assert [name for name, _ in moved] == [name for name, _ in original]
    shifts = {_creation_ms(b) - _creation_ms(a) for (_, a), (_, b) in zip(original, moved, strict=True)}
    assert len(shifts) == 1 and shifts.pop() % 86_400_000 == 0  # whole days: times of day stay
    occurred = [normalise(body).occurred_at for _, body in moved]
    assert max(occurred).date() == TODAY - timedelta(days=1)
    assert max(occurred) < datetime(2027, 2, 14, tzinfo=UTC)
    money = [
        normalise(body).occurred_at
        for _, body in moved
        if body["event"]
        in ("PURCHASE_APPROVED", "PURCHASE_REFUNDED", "PURCHASE_CHARGEBACK", "PURCHASE_COMPLETE")
    ]
    in_default_range = [t for t in money if t.date() >= TODAY - timedelta(days=89)]
    assert len(in_default_range) >= len(money) - 1 >= 6


def test_every_date_field_moves_with_the_event():
    (_, body), *_ = [s for s in load_samples() if s[0] == "purchase_approved_subscription_renewal.json"]
    (_, moved), *_ = [
        s for s in redate(load_samples(), TODAY) if s[0] == "purchase_approved_subscription_renewal.json"
    ]
    days = (_creation_ms(moved) - _creation_ms(body)) // 86_400_000
    for key in ("approved_date", "order_date", "date_next_charge"):
        assert moved["data"]["purchase"][key] - body["data"]["purchase"][key] == days * 86_400_000
    warranty = moved["data"]["product"]["warranty_date"]
    assert warranty == (
        datetime.fromisoformat(body["data"]["product"]["warranty_date"].replace("Z", "+00:00"))
        + timedelta(days=days)
    ).isoformat().replace("+00:00", "Z")
    assert moved["data"]["purchase"]["price"] == body["data"]["purchase"]["price"]
