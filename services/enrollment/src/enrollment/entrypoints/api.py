"""HTTP entry point: product mappings, the LMS queue and audit, students and their access.

Every route needs ``Authorization: Bearer <ADMIN_TOKEN>`` (401 otherwise). An operator tool may name the
person acting in ``X-CourseBridge-Actor`` (kept in the audit trail; default ``admin-api``).

- ``PUT /admin/products/<id>``            create or replace (201 / 200; 400 bad body; 422 a course
  TalentLMS does not have; 503 course list not loaded yet). ``?dry_run=true``: what it would change
- ``GET /admin/products/<id>``            one mapping (404 when none)
- ``DELETE /admin/products/<id>``         remove it (200, 404 when none); ``?dry_run=true`` previews
- ``GET /admin/products``                 all mappings
- ``GET /admin/products/<id>/audit``      the audit trail of a product
- ``GET /admin/lms/courses``              TalentLMS's course list as last read (the course picker)
- ``GET /admin/lms/queue``                queue depth per lane, oldest age, ETA, quota, dispatcher pause
- ``GET /admin/parked``                   approvals waiting for a mapping (``?product_id=`` filters)
- ``GET /admin/students/failed``          students with courses TalentLMS refused or that do not exist
- ``GET /admin/students?transaction=|subscriber_code=``  which students a purchase or subscriber concerns
- ``/admin/deadletters``                   dead letters of enrollment's subscriptions (list, show, replay,
  discard: ``coursebridge.deadletters``)
- ``POST /admin/students/<email>/resync`` recompute desired, re-read TalentLMS, act (202)
- ``GET /admin/audit/last`` / ``POST /admin/audit``  the last drift audit / ask for one now (202)
- ``GET /admin/learning``                 the timeline poller: watermarks, its quota share this hour,
  next poll, last run (calls, events published, unknown users, gaps)
- ``GET /students/<email>/enrollments``   the student's courses with status, reason, queue position and
  ETA; with ``?links=true`` a one-click TalentLMS link per enrolled course (fetched then, never stored)
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Blueprint, Flask, Response, jsonify, request

from coursebridge.ports import DocumentStore
from coursebridge.runtime.auth import require_bearer
from enrollment.domain.ids import is_valid_email, is_valid_product_id
from enrollment.domain.mapping import InvalidMapping, parse_mapping
from enrollment.service_layer.audit import last_audit, request_audit
from enrollment.service_layer.catalogue import Catalogue, CourseListUnavailable, UnknownCourses
from enrollment.service_layer.dispatcher import STATE_DOC
from enrollment.service_layer.learning import learning_status
from enrollment.service_layer.ports import LearningPlatform, LmsError
from enrollment.service_layer.repository import LMS_STATE, QUEUE
from enrollment.service_layer.students import failed_students, find_students, resync, student_view

log = structlog.get_logger(__name__)
ACTOR_HEADER = "X-CourseBridge-Actor"


def _bad_request(message: str) -> tuple[Response, int]:
    return jsonify(error="bad_request", message=message), 400


def _product_id_or_error(product_id: str) -> tuple[Response, int] | None:
    if not is_valid_product_id(product_id):
        return _bad_request("the Hotmart product id must be 1-64 letters, digits, '-' or '_'")
    return None


def _actor() -> str:
    actor = (request.headers.get(ACTOR_HEADER) or "").strip()
    return actor[:200] if actor else "admin-api"


def _dry_run() -> bool:
    return request.args.get("dry_run", "").lower() in ("1", "true", "yes")


def admin_blueprint(
    store: DocumentStore, admin_token: str | None, *, lms: LearningPlatform | None = None
) -> Blueprint:
    blueprint = Blueprint("enrollment_admin", __name__)
    catalogue = Catalogue(store)
    guarded = require_bearer(admin_token)

    @blueprint.put("/admin/products/<product_id>")
    @guarded
    def put_product(product_id: str) -> tuple[Response, int]:
        if (error := _product_id_or_error(product_id)) is not None:
            return error
        body = request.get_json(silent=True)
        if body is None:
            return _bad_request("the body must be JSON (Content-Type: application/json)")
        try:
            mapping = parse_mapping(product_id, body)
            catalogue.check_courses(mapping)
        except InvalidMapping as invalid:
            return _bad_request(str(invalid))
        except UnknownCourses as unknown:
            return jsonify(error="unknown_course", message=str(unknown), course_ids=unknown.course_ids), 422
        except CourseListUnavailable as unavailable:
            return jsonify(error="course_list_unavailable", message=str(unavailable)), 503
        if _dry_run():
            return jsonify(catalogue.dry_run(product_id, mapping)), 200
        saved, created = catalogue.put(mapping, actor=_actor())
        return jsonify(saved), 201 if created else 200

    @blueprint.get("/admin/products/<product_id>")
    @guarded
    def get_product(product_id: str) -> tuple[Response, int]:
        if (error := _product_id_or_error(product_id)) is not None:
            return error
        mapping = catalogue.get(product_id)
        if mapping is None:
            return jsonify(error="not_found", message="no mapping for that product"), 404
        return jsonify(mapping), 200

    @blueprint.delete("/admin/products/<product_id>")
    @guarded
    def delete_product(product_id: str) -> tuple[Response, int]:
        if (error := _product_id_or_error(product_id)) is not None:
            return error
        if catalogue.get(product_id) is None:
            return jsonify(error="not_found", message="no mapping for that product"), 404
        if _dry_run():
            return jsonify(catalogue.dry_run(product_id, None)), 200
        removed = catalogue.delete(product_id, actor=_actor())
        if removed is None:
            return jsonify(error="not_found", message="no mapping for that product"), 404
        return jsonify({**removed, "removed": True}), 200

    @blueprint.get("/admin/products")
    @guarded
    def list_products() -> tuple[Response, int]:
        return jsonify(products=catalogue.list()), 200

    @blueprint.get("/admin/products/<product_id>/audit")
    @guarded
    def product_audit(product_id: str) -> tuple[Response, int]:
        if (error := _product_id_or_error(product_id)) is not None:
            return error
        return jsonify(audit=catalogue.audit_trail(product_id)), 200

    @blueprint.get("/admin/lms/courses")
    @guarded
    def lms_courses() -> tuple[Response, int]:
        try:
            doc = catalogue.known_courses()
        except CourseListUnavailable as unavailable:
            return jsonify(error="course_list_unavailable", message=str(unavailable)), 503
        return jsonify(courses=doc["courses"], fetched_at=doc.get("fetched_at")), 200

    @blueprint.get("/admin/lms/queue")
    @guarded
    def lms_queue() -> tuple[Response, int]:
        state: dict[str, Any] = dict(store.get(LMS_STATE, STATE_DOC) or {})
        state["depth_now"] = store.count(QUEUE)
        state.setdefault("eta_seconds", None)
        return jsonify(state), 200

    @blueprint.get("/admin/parked")
    @guarded
    def parked() -> tuple[Response, int]:
        product_id = request.args.get("product_id")
        if product_id is not None and (error := _product_id_or_error(product_id)) is not None:
            return error
        return jsonify(parked=catalogue.parked(product_id)), 200

    @blueprint.get("/admin/students/failed")
    @guarded
    def failed() -> tuple[Response, int]:
        return jsonify(students=failed_students(store)), 200

    @blueprint.get("/admin/students")
    @guarded
    def students_of() -> tuple[Response, int]:
        transaction = (request.args.get("transaction") or "").strip()[:256]
        code = (request.args.get("subscriber_code") or "").strip()[:256]
        if bool(transaction) == bool(code):
            return _bad_request("give exactly one of transaction or subscriber_code")
        return jsonify(students=find_students(store, transaction=transaction, subscriber_code=code)), 200

    @blueprint.post("/admin/students/<path:email>/resync")
    @guarded
    def resync_student(email: str) -> tuple[Response, int]:
        if not is_valid_email(email):
            return _bad_request("the path must contain a valid e-mail address")
        if not resync(store, email):
            return jsonify(error="not_found", message="no purchase is known for that e-mail"), 404
        log.info("enrollment.resync_requested", actor=_actor())
        return jsonify(queued=True, queue=student_view(store, email)["queue"]), 202

    @blueprint.get("/admin/audit/last")
    @guarded
    def audit_last() -> tuple[Response, int]:
        report = last_audit(store)
        if report is None:
            return jsonify(error="not_found", message="no drift audit has finished yet"), 404
        return jsonify(report), 200

    @blueprint.post("/admin/audit")
    @guarded
    def audit_now() -> tuple[Response, int]:
        request_audit(store, _actor())
        return jsonify(requested=True), 202

    @blueprint.get("/admin/learning")
    @guarded
    def learning() -> tuple[Response, int]:
        return jsonify(learning_status(store)), 200

    @blueprint.get("/students/<path:email>/enrollments")
    @guarded
    def enrollments(email: str) -> tuple[Response, int]:
        if not is_valid_email(email):
            return _bad_request("the path must contain a valid e-mail address")
        # Each link is a counted TalentLMS call: only a student-facing page asks for them (?links=true);
        # operator tools and polls do not spend the quota.
        wants_links = request.args.get("links", "").lower() in ("1", "true", "yes")
        return jsonify(student_view(store, email, links=_links(lms) if wants_links else None)), 200

    return blueprint


def _links(lms: LearningPlatform | None):
    if lms is None:
        return None

    def fetch(user_id: str, course_id: str) -> str | None:
        try:
            return lms.course_link(user_id, course_id)
        except LmsError as error:  # the view still answers; the link is a convenience
            log.warning("enrollment.link_unavailable", course_id=course_id, error=type(error).__name__)
            return None

    return fetch


def create_app() -> Flask:
    """Gunicorn's entry point: ``enrollment.entrypoints.api:create_app()``."""
    from enrollment.bootstrap import build_api

    return build_api()
