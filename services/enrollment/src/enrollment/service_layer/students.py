"""The "my courses" view: a student's entitlements with their status and the sources granting them."""

from __future__ import annotations

from typing import Any

from coursebridge.ports import DocumentStore, Filter
from enrollment.domain.ids import normalise_email
from enrollment.domain.saga import Entitlement
from enrollment.service_layer.saga import ENTITLEMENTS


def student_enrollments(store: DocumentStore, email: str) -> list[dict[str, Any]]:
    docs = store.query(ENTITLEMENTS, [Filter("email", "==", normalise_email(email))])
    courses = []
    for doc in docs:
        entitlement = Entitlement.from_json(doc.data)
        courses.append(
            {
                "course_id": entitlement.course_id,
                "status": entitlement.status,
                "granted_by": entitlement.granting_source(),
                "sources": [
                    {"access_id": access_id, **view}
                    for access_id, view in sorted(entitlement.sources.items())
                ],
                "enrolled_at": entitlement.enrolled_at,
                "revoked_at": entitlement.revoked_at,
                "failed_reason": entitlement.failed_reason,
                "created_at": entitlement.created_at,
                "updated_at": entitlement.updated_at,
            }
        )
    return sorted(courses, key=lambda c: c["course_id"])
