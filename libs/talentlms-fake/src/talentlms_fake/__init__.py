"""A faithful local stand-in for the TalentLMS REST API, v1 and v2 (see its README)."""

from talentlms_fake.app import API_PREFIX, STATE_EXTENSION, create_app
from talentlms_fake.server import FakeServer
from talentlms_fake.state import DEMO_COURSES, DEMO_MAPPINGS, ApiError, FakeState

__all__ = [
    "API_PREFIX",
    "DEMO_COURSES",
    "DEMO_MAPPINGS",
    "STATE_EXTENSION",
    "ApiError",
    "FakeServer",
    "FakeState",
    "create_app",
]
