"""The console's pages and actions (server-rendered; htmx for the dry run, every asset served locally).

Sign-in: locally the operator types ``ADMIN_TOKEN`` once (compared in constant time) and a name for the
audit trail; the session cookie (signed, HttpOnly, SameSite=Lax) keeps only that name — never the token,
which stays on the server and goes only to the services. On GKE (``CONSOLE_AUTH=iap``) the operator is
the Google identity in IAP's signed assertion, checked on every request (audience ``IAP_AUDIENCE``).

Every page needs a signed-in operator (else a redirect to ``/signin``); every POST carries a CSRF token
(Flask-WTF), and every action names the operator to the service that acts (``X-CourseBridge-Actor``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlparse

import structlog
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from console.adapters.iap import IAP_HEADER, IapVerifier
from console.adapters.services import DEADLETTER_SERVICES, ServiceError, Services
from console.domain.buyer import classify, eta_words, short_day, short_time
from console.domain.reports import PRESETS, BadQuery, ReportQuery, default_query, report_query
from console.service_layer import reports, views

log = structlog.get_logger(__name__)
OPEN_ENDPOINTS = frozenset(
    {"console.signin", "console.signin_post", "static", "healthz", "readyz", "metrics"}
)
# JSON for the pages' scripts: without a session they answer 401 (a script cannot follow a sign-in page).
DATA_ENDPOINTS = frozenset({"console.revenue_data", "console.learning_data"})


def _today() -> datetime:
    return datetime.now(UTC)


def _safe_next(target: str | None) -> str:
    """Only a path on this console (no scheme, no host): an open redirect would leak the session's use."""
    if not target:
        return "/"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def console_blueprint(
    services: Services,
    admin_token: str,
    *,
    iap: IapVerifier | None = None,
) -> Blueprint:
    bp = Blueprint("console", __name__)

    def operator() -> str | None:
        if iap is not None:
            return iap.operator(request.headers.get(IAP_HEADER))
        return session.get("operator")

    @bp.before_app_request
    def require_operator() -> Response | None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        who = operator()
        if who is None:
            if iap is not None:
                abort(401)
            if request.endpoint in DATA_ENDPOINTS:
                return jsonify(error="unauthorized", message="sign in again"), 401
            return redirect(url_for("console.signin", next=request.full_path.rstrip("?")))
        g.operator = who
        return None

    @bp.get("/signin")
    def signin() -> str:
        return render_template("signin.html", next=_safe_next(request.args.get("next")), iap=iap is not None)

    @bp.post("/signin")
    def signin_post() -> Response | tuple[str, int]:
        if iap is not None:
            return redirect("/")
        presented = (request.form.get("token") or "").encode()
        name = (request.form.get("operator") or "").strip()[:100]
        if not hmac.compare_digest(presented, admin_token.encode()) or not name:
            log.warning("console.signin_refused")
            message = "Wrong token." if name else "Say who you are (it goes into the audit trail)."
            return render_template(
                "signin.html", next=_safe_next(request.form.get("next")), error=message
            ), 401
        session.clear()
        session["operator"] = name
        session.permanent = True
        log.info("console.signed_in", operator=name)
        return redirect(_safe_next(request.form.get("next")))

    @bp.post("/signout")
    def signout() -> Response:
        session.clear()
        return redirect(url_for("console.signin"))

    # --- pages -----------------------------------------------------------------------------------------

    @bp.get("/")
    def overview() -> str:
        return render_template("overview.html", data=views.overview(services))

    @bp.get("/buyer")
    def buyer() -> str:
        query = (request.args.get("q") or "").strip()[:320]
        view = views.find_buyer(services, query) if query else None
        return render_template("buyer.html", query=query, view=view)

    @bp.get("/problems")
    def problems() -> str:
        return render_template("problems.html", data=views.problems(services))

    @bp.get("/products")
    def products() -> str:
        errors: dict[str, str] = {}
        mappings = views._try(errors, "enrollment", services.products, [])
        parked = views._try(errors, "enrollment", services.parked, [])
        unmapped = sorted({p.get("product_id") for p in parked if p.get("product_id")})
        return render_template("products.html", mappings=mappings, unmapped=unmapped, errs=errors)

    @bp.get("/products/<product_id>")
    def product(product_id: str) -> str:
        return render_template("product.html", data=views.product_page(services, product_id))

    @bp.get("/deadletters/<service>/<doc_id>")
    def deadletter(service: str, doc_id: str) -> str:
        if service not in DEADLETTER_SERVICES:
            abort(404)
        try:
            letter = services.deadletter(service, doc_id)
        except ServiceError as error:
            abort(error.status if error.status in (404,) else 502, error.message)
        return render_template("detail.html", title=f"Dead letter in {service}", item=letter, service=service)

    @bp.get("/quarantine/<doc_id>")
    def quarantined(doc_id: str) -> str:
        try:
            item = services.quarantined(doc_id)
        except ServiceError as error:
            abort(error.status if error.status in (404,) else 502, error.message)
        return render_template("detail.html", title="Quarantined webhook", item=item, service="ingest")

    # --- Revenue and Learning: pages drawn by their scripts from the JSON routes below ----------------------

    def report_page(template: str) -> str:
        errors: dict[str, str] = {}
        problem = None
        try:
            query = report_query(request.args, _today().date())
        except BadQuery as error:
            problem, query = str(error), default_query(_today().date())
        options = views._try(errors, "analytics", services.revenue_options, reports.EMPTY_OPTIONS)
        return render_template(
            template, q=query, options=options, presets=PRESETS, problem=problem, errs=errors
        )

    def report_data(work: Callable[[ReportQuery], dict[str, Any]]) -> tuple[Response, int]:
        try:
            query = report_query(request.args, _today().date())
        except BadQuery as error:
            return jsonify(error="bad_request", message=str(error)), 400
        try:
            return jsonify(work(query)), 200
        except ServiceError as error:
            log.warning("console.analytics_refused", route=request.endpoint, status=error.status)
            if error.status == 400:
                return jsonify(error="bad_request", message=f"analytics: {error.message}"), 400
            return jsonify(error="unavailable", message=f"analytics: {error.message}"), 502

    @bp.get("/revenue")
    def revenue() -> str:
        return report_page("revenue.html")

    @bp.get("/revenue/data")
    def revenue_data() -> tuple[Response, int]:
        return report_data(lambda query: reports.revenue(services, query))

    @bp.get("/learning")
    def learning() -> str:
        return report_page("learning.html")

    @bp.get("/learning/data")
    def learning_data() -> tuple[Response, int]:
        return report_data(lambda query: reports.learning(services, query))

    # --- actions (POST, CSRF-checked, audited) -----------------------------------------------------------

    def action(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def run(*args: Any, **kwargs: Any) -> Any:
                try:
                    message = view(*args, **kwargs)
                    log.info("console.action", action=name, operator=g.operator, outcome="done")
                    flash(message, "good")
                except ServiceError as error:
                    log.info(
                        "console.action", action=name, operator=g.operator, outcome=f"http {error.status}"
                    )
                    flash(f"{error.service} refused: {error.message}", "bad")
                return redirect(_safe_next(request.form.get("back")))

            return run

        return decorate

    @bp.post("/actions/resync")
    @action("resync")
    def resync() -> str:
        email = (request.form.get("email") or "").strip()
        answer = services.resync(email, g.operator)
        queue = answer.get("queue") or {}
        eta = eta_words(queue.get("eta_seconds"))
        return f"Resync queued (position {queue.get('position')}" + (f", ETA {eta})" if eta else ")")

    @bp.post("/actions/quarantine/<doc_id>/reprocess")
    @action("reprocess")
    def reprocess(doc_id: str) -> str:
        answer = services.reprocess(doc_id, g.operator)
        if answer.get("status") == "quarantined":
            return f"Still quarantined: {answer.get('reason')}"
        return f"Reprocessed: {answer.get('status')} ({answer.get('kind') or 'webhook'})"

    @bp.post("/actions/deadletters/<service>/<doc_id>/<verb>")
    @action("deadletter")
    def deadletter_action(service: str, doc_id: str, verb: str) -> str:
        if service not in DEADLETTER_SERVICES or verb not in ("replay", "discard"):
            abort(404)
        answer = services.deadletter_action(service, doc_id, verb, g.operator)
        if answer.get("outcome") == "failed":
            return f"Replay failed, still held: {answer.get('reason')}"
        if answer.get("error"):
            return f"Nothing done: {answer.get('message')}"
        return f"Dead letter {answer.get('outcome')}"

    @bp.post("/products/<product_id>/dry-run")
    def dry_run(product_id: str) -> tuple[str, int]:
        """The impact of the form's mapping, as a fragment (htmx) — nothing changes."""
        mapping = _mapping_from_form()
        try:
            impact = services.map_product(product_id, mapping, g.operator, dry_run=True)
        except ServiceError as error:
            return render_template("_impact.html", error=error.message), 200
        return render_template("_impact.html", impact=impact), 200

    @bp.post("/products/<product_id>")
    @action("map_product")
    def save_product(product_id: str) -> str:
        saved = services.map_product(product_id, _mapping_from_form(), g.operator)
        return f"Product {product_id} mapped to courses {', '.join(saved.get('course_ids') or [])}"

    @bp.post("/products")
    def open_product() -> Response:
        product_id = (request.form.get("product_id") or "").strip()
        return redirect(url_for("console.product", product_id=product_id) if product_id else "/products")

    return bp


def _mapping_from_form() -> dict[str, Any]:
    return {"course_ids": sorted(set(request.form.getlist("course_ids")), key=lambda c: (len(c), c))}


def register_filters(app: Flask) -> None:
    app.jinja_env.filters["when"] = short_time
    app.jinja_env.filters["day"] = short_day
    app.jinja_env.filters["eta"] = eta_words
    app.jinja_env.globals["classify"] = classify
