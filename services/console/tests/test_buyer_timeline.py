"""The buyer timeline puts every service's facts in one order, each line from the service that knows it."""

from __future__ import annotations

from console.domain.buyer import timeline


def test_payments_recorded_by_analytics_join_the_timeline_in_time_order() -> None:
    entries = timeline(
        ingest={
            "webhooks": [
                {
                    "received_at": "2026-03-01T10:00:01Z",
                    "hotmart_event": "PURCHASE_APPROVED",
                    "status": "published",
                }
            ]
        },
        students={},
        accesses=[],
        deadletters=[],
        payments=[
            {
                "kind": "purchase_refunded",
                "price": 97.0,
                "currency": "BRL",
                "transaction": "HP1",
                "occurred_at": "2026-03-05T09:00:00Z",
            },
            {
                "kind": "purchase_approved",
                "price": 97.0,
                "currency": "BRL",
                "transaction": "HP1",
                "occurred_at": "2026-03-01T10:00:00Z",
                "recurrence_number": 1,
            },
        ],
    )

    assert [(e.service, e.title) for e in entries] == [
        ("analytics", "Recorded purchase approved: 97.00 BRL"),
        ("ingest", "Hotmart PURCHASE_APPROVED received"),
        ("analytics", "Recorded purchase refunded: 97.00 BRL"),
    ]
    assert entries[0].detail == "transaction HP1, charge 1"
    assert entries[2].tone == "bad"
