"""Product mappings: which TalentLMS courses a Hotmart product (or one of its plans) grants.

``parse_mapping`` validates an admin request body and says precisely what is wrong with a bad one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_COURSES = 200
MAX_PLANS = 200
_ALLOWED_KEYS = frozenset({"course_ids", "plans", "access_days", "grace_days"})


class InvalidMapping(ValueError):
    """The body of a mapping change is not acceptable; the message says why."""


@dataclass(frozen=True)
class ProductMapping:
    product_id: str
    course_ids: tuple[str, ...]
    plans: dict[str, tuple[str, ...]] = field(default_factory=dict)
    access_days: int | None = None
    grace_days: int | None = None

    def courses_for(self, plan_id: str | None) -> tuple[str, ...]:
        """The plan's own courses when that plan is mapped, else the product's ``course_ids``."""
        if plan_id is not None and plan_id in self.plans:
            return self.plans[plan_id]
        return self.course_ids

    def to_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "course_ids": list(self.course_ids),
            "plans": {plan: list(courses) for plan, courses in self.plans.items()},
            "access_days": self.access_days,
            "grace_days": self.grace_days,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProductMapping:
        return cls(
            product_id=data["product_id"],
            course_ids=tuple(data.get("course_ids") or ()),
            plans={plan: tuple(courses) for plan, courses in (data.get("plans") or {}).items()},
            access_days=data.get("access_days"),
            grace_days=data.get("grace_days"),
        )


def _course_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidMapping(f"{where} must be a list of TalentLMS course ids (strings)")
    if len(value) > MAX_COURSES:
        raise InvalidMapping(f"{where} has more than {MAX_COURSES} courses")
    courses: list[str] = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not _IDENTIFIER.fullmatch(item):
            raise InvalidMapping(f"{where} contains {item!r}, which is not a course id")
        if item in courses:
            raise InvalidMapping(f"{where} lists course {item!r} twice")
        courses.append(item)
    return tuple(courses)


def _optional_days(body: dict[str, Any], key: str, minimum: int, maximum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise InvalidMapping(f"{key} must be null or an integer from {minimum} to {maximum}")
    return value


def parse_mapping(product_id: str, body: Any) -> ProductMapping:
    if not isinstance(body, dict):
        raise InvalidMapping("the body must be a JSON object")
    unknown = sorted(set(body) - _ALLOWED_KEYS)
    if unknown:
        raise InvalidMapping(f"unknown field(s): {', '.join(unknown)}")
    if "course_ids" not in body:
        raise InvalidMapping("course_ids is required (a list of TalentLMS course ids)")
    course_ids = _course_list(body["course_ids"], "course_ids")
    raw_plans = body.get("plans")
    if raw_plans is None:
        raw_plans = {}
    if not isinstance(raw_plans, dict):
        raise InvalidMapping("plans must be an object: Hotmart plan id -> list of course ids")
    if len(raw_plans) > MAX_PLANS:
        raise InvalidMapping(f"plans has more than {MAX_PLANS} entries")
    plans: dict[str, tuple[str, ...]] = {}
    for plan_id, courses in raw_plans.items():
        if not _IDENTIFIER.fullmatch(plan_id):
            raise InvalidMapping(f"plans has key {plan_id!r}, which is not a Hotmart plan id")
        plans[plan_id] = _course_list(courses, f"plans[{plan_id!r}]")
        if not plans[plan_id]:
            raise InvalidMapping(f"plans[{plan_id!r}] must list at least one course")
    if not course_ids and not plans:
        raise InvalidMapping("map the product to at least one course (course_ids or plans)")
    return ProductMapping(
        product_id=product_id,
        course_ids=course_ids,
        plans=plans,
        access_days=_optional_days(body, "access_days", 1, 36500),
        grace_days=_optional_days(body, "grace_days", 0, 365),
    )
