"""Wire the console: settings → service clients → Flask app with sessions, CSRF and IAP. Owns no data."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Response
from flask_wtf.csrf import CSRFProtect

from console.adapters.iap import IapVerifier
from console.adapters.services import Services
from console.config import ConsoleSettings
from console.entrypoints.web import console_blueprint, register_filters
from coursebridge.runtime.app import create_app
from coursebridge.runtime.logging import configure_logging, register_secret

SERVICE = "console"
_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


def build_app(
    settings: ConsoleSettings | None = None,
    *,
    services: Services | None = None,
    iap: IapVerifier | None = None,
) -> Flask:
    settings = settings or ConsoleSettings.from_env()
    configure_logging(SERVICE, "INFO")
    register_secret(settings.admin_token)
    services = services or Services.from_urls(settings.urls, settings.admin_token, settings.timeout)
    if iap is None and settings.auth == "iap":
        iap = IapVerifier(settings.iap_audience or "")
    app = create_app(SERVICE, blueprints=[console_blueprint(services, settings.admin_token, iap=iap)])
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="coursebridge_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    CSRFProtect(app)
    register_filters(app)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    return app
