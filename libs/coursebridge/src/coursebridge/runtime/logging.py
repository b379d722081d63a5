"""Structured JSON logs in Cloud Logging's shape, with secrets and buyer personal data scrubbed.

Cloud Logging reads ``severity`` and ``message`` from a JSON line and groups lines by
``logging.googleapis.com/trace``. Every line also carries the correlation id of the purchase it concerns.
Redaction happens in the last processor, so no call site can leak a hottok, an API key or a buyer's
email, document or phone, however it names the field.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog

REDACTED = "[redacted]"

_SENSITIVE_KEY = re.compile(
    r"(hottok|token|secret|password|passwd|api_?key|authorization|cookie|e-?mail|document|cpf|cnpj|phone|"
    r"address|zip_?code|checkout_phone)",
    re.IGNORECASE,
)
# Also URL-encoded (ana%40example.com), as it appears in request paths such as /students/<email>/...
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+(?:@|%40)[A-Za-z0-9.\-]+\.[A-Za-z]{2,}", re.IGNORECASE)
_LONG_DIGITS = re.compile(r"(?<![\w-])\+?\d[\d .\-/()]{8,}\d(?![\w-])")
_BEARER = re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")
_SEVERITY = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
}
_secrets: set[str] = set()
# Fields the runtime itself fills with values from a closed set (never from a request or a payload).
_TRUSTED_KEYS = frozenset(
    {"severity", "timestamp", "logger", "service", "method", "route", "outcome", "kind"}
)


def register_secret(*values: str | None) -> None:
    """Values that must never be printed verbatim (the hottoks, API keys, admin token)."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def scrub_text(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(r"\1 " + REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    return _LONG_DIGITS.sub(_redact_if_identifier, text)


def _redact_if_identifier(match: re.Match[str]) -> str:
    """Phones and document numbers have 10+ digits; dates such as 2026-11-21 have 8 and stay."""
    digits = sum(ch.isdigit() for ch in match.group(0))
    return REDACTED if digits >= 10 else match.group(0)


def scrub(value: Any, key: str = "") -> Any:
    if key and _SENSITIVE_KEY.search(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [scrub(v) for v in value]
    return value


def _cloud_logging_shape(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict["message"] = event_dict.pop("event", "")
    level = event_dict.pop("level", method)
    event_dict["severity"] = _SEVERITY.get(str(level).lower(), "DEFAULT")
    trace = event_dict.pop("trace", None)
    if trace:
        event_dict["logging.googleapis.com/trace"] = trace
    return event_dict


def _redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if str(event_dict.get("logger", "")).startswith("gunicorn."):
        # The server's own lines carry addresses and pids (which look like long numbers), but at DEBUG
        # also request paths: mask secrets and e-mail addresses, leave the numbers.
        return {key: _mask_secrets(value) for key, value in event_dict.items()}
    return {
        key: (
            value
            if key in _TRUSTED_KEYS or not isinstance(value, str | Mapping | list | tuple | set)
            else scrub(value, key)
        )
        for key, value in event_dict.items()
    }


def _mask_secrets(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            value = value.replace(secret, REDACTED)
        value = _EMAIL.sub(REDACTED, value)
    return value


_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
]


def json_formatter() -> logging.Formatter:
    """The one formatter for structlog and standard-library records alike (gunicorn's logs included)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _cloud_logging_shape,
            _redact,
            structlog.processors.JSONRenderer(),
        ],
    )


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route structlog and the standard library through one JSON renderer on stdout."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # drop disabled levels before any processing
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("werkzeug", "urllib3", "google", "grpc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.contextvars.bind_contextvars(service=service)


def bind_correlation(correlation_id: str | None, trace: str | None = None) -> None:
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
    if trace:
        structlog.contextvars.bind_contextvars(trace=trace)


def clear_correlation() -> None:
    structlog.contextvars.unbind_contextvars("correlation_id", "trace")
