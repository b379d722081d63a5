"""HTTP entry point: the product-mapping admin API, parked approvals and the student view.

Every route needs ``Authorization: Bearer <ADMIN_TOKEN>`` (401 otherwise).

- ``PUT /admin/products/<id>``    create or replace (201 created, 200 replaced or unchanged, 400)
- ``GET /admin/products/<id>``    one mapping (404 when none)
- ``DELETE /admin/products/<id>`` remove it (200, 404 when none)
- ``GET /admin/products``         all mappings
- ``GET /admin/products/<id>/audit`` the audit trail of a product
- ``GET /admin/parked``           approvals waiting for a mapping (``?product_id=`` filters)
- ``GET /students/<email>/enrollments`` the student's courses, status and granting sources
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, request

from coursebridge.ports import DocumentStore
from coursebridge.runtime.auth import require_bearer
from enrollment.domain.ids import is_valid_email, is_valid_product_id
from enrollment.domain.mapping import InvalidMapping, parse_mapping
from enrollment.service_layer.catalogue import Catalogue
from enrollment.service_layer.students import student_enrollments


def _bad_request(message: str) -> tuple[Response, int]:
    return jsonify(error="bad_request", message=message), 400


def _product_id_or_error(product_id: str) -> tuple[Response, int] | None:
    if not is_valid_product_id(product_id):
        return _bad_request("the Hotmart product id must be 1-64 letters, digits, '-' or '_'")
    return None


def admin_blueprint(store: DocumentStore, admin_token: str | None) -> Blueprint:
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
        except InvalidMapping as invalid:
            return _bad_request(str(invalid))
        saved, created = catalogue.put(mapping)
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
        removed = catalogue.delete(product_id)
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

    @blueprint.get("/admin/parked")
    @guarded
    def parked() -> tuple[Response, int]:
        product_id = request.args.get("product_id")
        if product_id is not None and (error := _product_id_or_error(product_id)) is not None:
            return error
        return jsonify(parked=catalogue.parked(product_id)), 200

    @blueprint.get("/students/<path:email>/enrollments")
    @guarded
    def enrollments(email: str) -> tuple[Response, int]:
        if not is_valid_email(email):
            return _bad_request("the path must contain a valid e-mail address")
        return jsonify(enrollments=student_enrollments(store, email)), 200

    return blueprint


def create_app() -> Flask:
    """Gunicorn's entry point: ``enrollment.entrypoints.api:create_app()``."""
    from enrollment.bootstrap import build_api

    return build_api()
