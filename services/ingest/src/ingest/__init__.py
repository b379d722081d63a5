"""Ingest: the front door for Hotmart webhooks.

Hotmart disables a webhook URL that keeps failing, so this service does as little as possible before
answering: check the hottok, store the body durably (deduplicated by Hotmart's event id) together with an
outbox entry, answer 2xx. A relay publishes the outbox to Pub/Sub afterwards, so a Pub/Sub outage never
turns into a failing webhook.
"""
