"""Catalogue events: the enrollment admin API's product mappings, so other services keep their own copy."""

from __future__ import annotations

from coursebridge.events.contracts import EventContract, register_contract
from coursebridge.topology import CATALOGUE

PRODUCT_MAPPED = "coursebridge.catalogue.product_mapped.v1"
PRODUCT_UNMAPPED = "coursebridge.catalogue.product_unmapped.v1"
ORDERING_KEY = "`product:<hotmart product id>`"

_EXAMPLE = {
    "product_id": "4711",
    "course_ids": ["7", "9"],
    "plans": {"102": ["7", "9", "11"]},
    "access_days": None,
    "grace_days": 7,
    "revision": 3,
    "changed_at": "2025-03-01T10:00:00.000Z",
    "removed": False,
}

for _type, _description, _example in (
    (
        PRODUCT_MAPPED,
        "A Hotmart product (or one of its plans) now maps to these TalentLMS courses.",
        _EXAMPLE,
    ),
    (
        PRODUCT_UNMAPPED,
        "A product mapping was deleted; approvals for it are parked again.",
        {**_EXAMPLE, "course_ids": [], "plans": {}, "revision": 4, "removed": True},
    ),
):
    register_contract(
        EventContract(
            type=_type,
            topic=CATALOGUE,
            schema_name="catalogue_product.v1",
            producer="enrollment",
            description=_description,
            ordering_key=ORDERING_KEY,
            example=_example,
        )
    )
