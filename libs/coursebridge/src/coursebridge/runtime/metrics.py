"""Prometheus metrics every service exposes on ``/metrics`` (scraped by Managed Prometheus on GKE).

Gunicorn runs several worker processes; ``PROMETHEUS_MULTIPROC_DIR`` makes the client aggregate them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "coursebridge_http_requests_total", "HTTP requests answered", ["service", "route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "coursebridge_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter(
    "coursebridge_events_published_total", "Events published to the bus", ["service", "topic", "type"]
)
EVENTS_CONSUMED = Counter(
    "coursebridge_events_consumed_total",
    "Events handled successfully (acked)",
    ["service", "subscription", "type"],
)
EVENTS_FAILED = Counter(
    "coursebridge_events_failed_total",
    "Event handling failures (nacked for retry, or dead-lettered when permanent)",
    ["service", "subscription", "type", "outcome"],
)
EVENTS_UNKNOWN = Counter(
    "coursebridge_events_unknown_total",
    "Events a consumer has no handler for: 'held' (a newer version of a type it handles, retried then "
    "parked) or 'recorded' (a type it does not know, acknowledged)",
    ["service", "subscription", "type", "outcome"],
)
EVENT_HANDLING_SECONDS = Histogram(
    "coursebridge_event_handling_seconds",
    "Time a handler took per event",
    ["service", "subscription"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def render_metrics() -> tuple[bytes, str]:
    """The exposition text, aggregated across gunicorn workers when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
