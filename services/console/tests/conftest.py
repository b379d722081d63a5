"""The console's tests drive the real services in this process (``inproc_stack``)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))
from inproc_stack import ADMIN_TOKEN, InProcessStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[InProcessStack]:
    stack = InProcessStack(tmp_path_factory.mktemp("stack"))
    try:
        stack.serve_console()
        stack.wait_course_list()
        yield stack
    finally:
        stack.close()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def sign_in(url: str, name: str = "maria@school.example") -> requests.Session:
    http = requests.Session()
    token = csrf_of(http.get(url + "/signin", timeout=10).text)
    response = http.post(
        url + "/signin",
        data={"csrf_token": token, "operator": name, "token": ADMIN_TOKEN, "next": "/"},
        timeout=10,
    )
    assert response.status_code == 200
    return http


@pytest.fixture(scope="module")
def operator(stack: InProcessStack) -> requests.Session:
    return sign_in(stack.urls["console"])
