"""Logs are JSON in Cloud Logging's shape and never carry secrets or buyer personal data."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from coursebridge.runtime.logging import (
    bind_correlation,
    clear_correlation,
    configure_logging,
    register_secret,
)


@pytest.fixture
def log_lines():
    configure_logging("test-service", "INFO")
    register_secret("hottok-Secret-1234", "tl-key-9f8e7d")  # services register their hottoks and API keys
    stream = io.StringIO()
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)][:1]
    handler.setStream(stream)

    def read() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]

    yield read
    clear_correlation()


def test_lines_have_cloud_logging_fields_and_the_correlation_id(log_lines):
    bind_correlation("HP1000000001", "projects/p/traces/abc")
    structlog.get_logger("t").warning("relay.publish_deferred", deferred=3)
    [line] = log_lines()
    assert line["severity"] == "WARNING"
    assert line["message"] == "relay.publish_deferred"
    assert line["correlation_id"] == "HP1000000001"
    assert line["logging.googleapis.com/trace"] == "projects/p/traces/abc"
    assert line["service"] == "test-service"
    assert line["deferred"] == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "ana.souza@example.com"),
        (
            "buyer",
            {"email": "ana.souza@example.com", "document": "123.456.789-09", "phone": "+55 11 98765-4321"},
        ),
        ("detail", "user ana.souza@example.com failed"),
        ("detail", "document 123.456.789-09 refused"),
        ("detail", "call +55 (11) 98765-4321"),
        ("detail", "header was hottok-Secret-1234"),
        ("headers", {"Authorization": "Bearer abc.def.ghi"}),
        ("api_key", "tl-key-9f8e7d"),
    ],
)
def test_personal_data_and_secrets_are_redacted_wherever_they_appear(log_lines, field, value):
    structlog.get_logger("t").info("something.happened", **{field: value})
    logging.getLogger("stdlib").error("stdlib line with %s", json.dumps(value))
    text = json.dumps(log_lines())
    for needle in (
        "ana.souza@example.com",
        "123.456.789-09",
        "98765-4321",
        "hottok-Secret-1234",
        "abc.def.ghi",
        "tl-key-9f8e7d",
    ):
        assert needle not in text
    assert "[redacted]" in text


def test_dates_and_ids_survive_redaction(log_lines):
    structlog.get_logger("t").info("x", day="2026-11-21", transaction="HP1834567290", attempt=3)
    [line] = log_lines()
    assert line["day"] == "2026-11-21"
    assert line["transaction"] == "HP1834567290"
