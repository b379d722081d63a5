"""Desired state: which courses a student should have, computed (never accumulated) from what pays.

``desired(sources, mappings)`` is a pure function of the student's access sources and the *current* product
mappings. A mapping change, a plan switch (at any time, also while suspended) or a deleted mapping changes
its answer for every affected student, and the controller drives TalentLMS to the new answer: courses are
added *and* removed. Nothing remembers "what we granted last time" here; that is the LMS record's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from enrollment.domain.access import AccessSource
from enrollment.domain.mapping import ProductMapping


@dataclass(frozen=True)
class Desired:
    """Courses to have, each with the access ids that grant it; and active sources with no mapping."""

    courses: dict[str, tuple[str, ...]] = field(default_factory=dict)
    parked: tuple[str, ...] = ()  # access ids: active, but their product is not mapped to any course

    @property
    def course_ids(self) -> frozenset[str]:
        return frozenset(self.courses)


def desired(sources: Iterable[AccessSource], mappings: Mapping[str, ProductMapping | None]) -> Desired:
    granted: dict[str, list[str]] = {}
    parked: list[str] = []
    for source in sorted(sources, key=lambda s: s.access_id):
        if not source.active:
            continue
        mapping = mappings.get(source.product_id or "")
        courses = mapping.courses_for(source.plan_id) if mapping is not None else ()
        if not courses:
            parked.append(source.access_id)
            continue
        for course in courses:
            granted.setdefault(course, []).append(source.access_id)
    return Desired({course: tuple(ids) for course, ids in sorted(granted.items())}, tuple(parked))


@dataclass(frozen=True)
class MappingImpact:
    """What a mapping change would do to one student (the dry run's unit)."""

    gains: frozenset[str]
    losses: frozenset[str]


def impact(
    sources: Iterable[AccessSource],
    before: Mapping[str, ProductMapping | None],
    after: Mapping[str, ProductMapping | None],
) -> MappingImpact:
    sources = list(sources)
    old = desired(sources, before).course_ids
    new = desired(sources, after).course_ids
    return MappingImpact(gains=new - old, losses=old - new)
