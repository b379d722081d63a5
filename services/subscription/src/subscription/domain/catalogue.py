"""The subscription service's copy of the catalogue: access and grace terms per product."""

from __future__ import annotations

from typing import Any

from subscription.domain.access import ProductTerms


def terms_from_catalogue(data: dict[str, Any]) -> ProductTerms:
    """From ``catalogue_product.v1`` data; a removed mapping keeps its terms (past sales follow them)."""
    return ProductTerms(
        product_id=data["product_id"],
        access_days=data.get("access_days"),
        grace_days=data.get("grace_days"),
        revision=int(data["revision"]),
    )


def supersedes(new: ProductTerms, stored: dict[str, Any] | None) -> bool:
    """A higher revision replaces a lower one; older or equal revisions (redeliveries) are ignored."""
    return stored is None or new.revision > int(stored.get("revision", 0))


def terms_doc(terms: ProductTerms, changed_at: str | None, removed: bool) -> dict[str, Any]:
    return {
        "product_id": terms.product_id,
        "access_days": terms.access_days,
        "grace_days": terms.grace_days,
        "revision": terms.revision,
        "changed_at": changed_at,
        "removed": removed,
    }


def terms_from_doc(doc: dict[str, Any] | None) -> ProductTerms | None:
    if doc is None:
        return None
    return ProductTerms(
        product_id=doc["product_id"],
        access_days=doc.get("access_days"),
        grace_days=doc.get("grace_days"),
        revision=int(doc.get("revision", 0)),
    )
