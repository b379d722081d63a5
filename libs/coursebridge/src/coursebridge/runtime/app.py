"""Flask app factory: the HTTP face every service shares.

``/healthz`` says the process is alive (Kubernetes restarts it otherwise); ``/readyz`` says its backends
answer (Kubernetes stops sending traffic otherwise); ``/metrics`` is for Prometheus. Errors are JSON, and
every request is measured and logged without its body.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable, Iterable, Mapping

import structlog
from flask import Blueprint, Flask, Response, abort, g, jsonify, request
from werkzeug.exceptions import HTTPException

from coursebridge.runtime.logging import bind_correlation, clear_correlation
from coursebridge.runtime.metrics import HTTP_LATENCY, HTTP_REQUESTS, render_metrics

log = structlog.get_logger(__name__)

ReadinessCheck = Callable[[], None]
CORRELATION_HEADER = "X-Correlation-Id"
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def _trace_from_headers(project: str | None) -> str | None:
    """Cloud Logging groups a request's lines by trace: from ``traceparent`` or the GCLB header."""
    trace_id = None
    traceparent = request.headers.get("traceparent", "")
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        trace_id = parts[1]
    else:
        cloud = request.headers.get("X-Cloud-Trace-Context", "")
        trace_id = cloud.split("/", 1)[0] or None
    if trace_id and project:
        return f"projects/{project}/traces/{trace_id}"
    return trace_id


def bound_streamed_body(environ: dict, limit: int) -> None:
    """Read a body sent without ``Content-Length`` (chunked) now, and refuse it with 413 past ``limit``.

    Werkzeug only *truncates* such a body at ``MAX_CONTENT_LENGTH``: a view would get the first MiB of a
    larger webhook and store it as if it were the whole. Reading the raw stream one byte past the limit
    tells the two apart; a body within the limit is handed on with its length, like any other.
    """
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS"):
        return
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()  # overrides any length
    if not chunked and (environ.get("CONTENT_LENGTH") or not environ.get("wsgi.input_terminated")):
        return  # a declared length (checked already), or no terminated stream: Werkzeug reads nothing
    body = environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        abort(413)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def create_app(
    service: str,
    *,
    blueprints: Iterable[Blueprint] = (),
    readiness: Mapping[str, ReadinessCheck] | None = None,
    max_content_length: int = 1024 * 1024,
    gcp_project: str | None = None,
    notes: Mapping[str, str] | None = None,
) -> Flask:
    """``notes``: facts /readyz reports without failing on them (e.g. an optional feature that is off)."""
    app = Flask(service)
    app.config["MAX_CONTENT_LENGTH"] = max_content_length  # no CourseBridge API takes more (413 beyond)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    checks = dict(readiness or {})

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        if request.content_length is not None and request.content_length > max_content_length:
            abort(413)  # before any view runs, whether or not it would read the body
        bound_streamed_body(request.environ, max_content_length)
        correlation = request.headers.get(CORRELATION_HEADER) or uuid.uuid4().hex
        g.correlation_id = correlation[:128]
        bind_correlation(g.correlation_id, _trace_from_headers(gcp_project))

    @app.after_request
    def _measure(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        HTTP_REQUESTS.labels(service, route, request.method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(service, route, request.method).observe(elapsed)
        response.headers[CORRELATION_HEADER] = g.get("correlation_id", "")
        if route not in _QUIET_ROUTES:
            log.info(
                "http.request",
                method=request.method,
                route=route,
                status=response.status_code,
                latency_ms=round(elapsed * 1000, 2),
                **g.get("log_fields", {}),
            )
        return response

    @app.teardown_request
    def _forget(_error: BaseException | None) -> None:
        clear_correlation()

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        return jsonify(error=error.name.lower().replace(" ", "_"), message=error.description), status

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("http.unhandled_error", error_type=type(error).__name__)
        return jsonify(error="internal_error", message="unexpected error; see the service logs"), 500

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", service=service)

    extra = {"notes": dict(notes)} if notes else {}

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        failures = {}
        for name, check in checks.items():
            try:
                check()
            except Exception as error:
                failures[name] = f"{type(error).__name__}: {error}"[:300]
        if failures:
            log.warning("readiness.failed", failures=failures)
            return jsonify(status="unavailable", failures=failures, **extra), 503
        return jsonify(status="ready", checks=sorted(checks), **extra), 200

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, content_type=content_type)

    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return app
