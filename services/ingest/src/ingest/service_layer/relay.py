"""Ingest's outbox relay: the shared transactional-outbox relay, marking each webhook as published."""

from __future__ import annotations

from coursebridge.outbox import OutboxRelay
from coursebridge.ports import DocumentStore, MessageBus
from ingest.service_layer.intake import mark_webhooks_published


def webhook_relay(store: DocumentStore, bus: MessageBus, *, batch_size: int = 100) -> OutboxRelay:
    return OutboxRelay(
        store,
        bus,
        service="ingest",
        batch_size=batch_size,
        parallelism=8,
        on_published=mark_webhooks_published,
    )
