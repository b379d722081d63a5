"""The fake TalentLMS behaves like the real v1 API where the adapter depends on it.

Raw HTTP against the served fake (``fake_lms``), so what is tested is the wire: auth, form encoding,
``key:value`` path arguments, messages, non-idempotency, rate limiting and the test controls.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from talentlms_fake import create_app

DATE = re.compile(r"^\d{2}/\d{2}/\d{4}, \d{2}:\d{2}:\d{2}$")
SIGNUP = {
    "first_name": "Ana",
    "last_name": "Souza",
    "email": "ana@example.com",
    "login": "ana",
    "password": "S3cret!x",
}


class Api:
    """Raw calls to one fake, with its API key."""

    def __init__(self, fake: Any) -> None:
        self.base = fake.base_url
        self.auth = (fake.api_key, "")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("auth", self.auth)
        return requests.get(f"{self.base}/{path}", timeout=5, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("auth", self.auth)
        return requests.post(f"{self.base}/{path}", timeout=5, **kwargs)

    def signup(self, **overrides: str) -> dict[str, Any]:
        response = self.post("usersignup", data={**SIGNUP, **overrides})
        assert response.status_code == 200, response.text
        return response.json()


def error_of(response: requests.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type"}
    return body["error"]["message"]


@pytest.fixture
def api(fake_lms: Any) -> Api:
    return Api(fake_lms)


# --- auth -------------------------------------------------------------------------------------------------


def test_missing_or_wrong_key_is_401_with_talentlms_message(api: Api) -> None:
    for auth in (None, ("not-the-key", ""), ("", "")):
        response = api.get("courses", auth=auth)
        assert response.status_code == 401
        assert error_of(response) == "You need a valid user and password"
        assert "X-RateLimit-Remaining" not in response.headers
    assert api.get("courses").status_code == 200


def test_api_key_as_user_name_with_empty_password(fake_lms: Any) -> None:
    response = requests.get(
        f"{fake_lms.base_url}/courses",
        headers={"Authorization": "Basic " + base64.b64encode(f"{fake_lms.api_key}:".encode()).decode()},
        timeout=5,
    )
    assert response.status_code == 200
    assert fake_lms.state.snapshot()["rejected"] == {}


# --- form encoding and key:value arguments ----------------------------------------------------------------


def test_post_bodies_must_be_form_encoded(api: Api, fake_lms: Any) -> None:
    response = api.post("usersignup", json=SIGNUP)
    assert response.status_code == 400
    assert error_of(response) == "Invalid arguments provided"
    assert fake_lms.state.snapshot()["users"] == []
    assert (
        api.post("usersignup", files={k: (None, v) for k, v in SIGNUP.items()}).status_code == 200
    )  # multipart


def test_signup_answers_the_user_with_string_ids_and_talentlms_dates(api: Api) -> None:
    user = api.signup()
    assert isinstance(user["id"], str) and user["id"].isdigit()
    assert user["login"] == "ana" and user["email"] == "ana@example.com" and user["status"] == "active"
    assert DATE.match(user["created_on"]) and DATE.match(user["last_updated"])
    assert "password" not in user


def test_signup_requires_every_field_and_a_plausible_email(api: Api) -> None:
    for field_name in SIGNUP:
        response = api.post("usersignup", data={k: v for k, v in SIGNUP.items() if k != field_name})
        assert error_of(response) == "Invalid arguments provided", field_name
    assert (
        error_of(api.post("usersignup", data={**SIGNUP, "email": "not-an-email"}))
        == "Invalid arguments provided"
    )


def test_lookup_by_email_takes_url_encoded_key_value_arguments(api: Api) -> None:
    created = api.signup(email="ana.souza+promo@example.com", login="ana.souza")
    for path in (
        "users/email:ana.souza%2Bpromo%40example.com",
        "users/email:ana.souza+promo@example.com",  # '+' in a path is a plus sign, not a space
        "users/email:ANA.SOUZA%2BPROMO%40EXAMPLE.COM",  # emails compare case-insensitively
    ):
        response = api.get(path)
        assert response.status_code == 200, path
        assert response.json()["id"] == created["id"]
        assert response.json()["courses"] == []
    assert api.get(f"users/id:{created['id']}").json()["email"] == "ana.souza+promo@example.com"
    assert api.get("users/username:ana.souza").json()["id"] == created["id"]
    miss = api.get("users/email:ana.souza%40example.com")
    assert miss.status_code == 404
    assert error_of(miss) == "The requested user does not exist"


def test_encoded_separators_stay_inside_a_value(api: Api) -> None:
    created = api.signup(login="ana:1,x")
    assert api.get("users/username:ana%3A1%2Cx").json()["id"] == created["id"]


@pytest.mark.parametrize(
    "path",
    [
        "users/email",  # no ':'
        "users/email:",  # empty value
        "users/colour:blue",  # unknown key
        "users/email:a%40b.com,id:1",  # one key only
        "users/id:abc",
        "removeuserfromcourse/user_id:1",  # course_id missing
        "usersetstatus/user_id:1,status:sleeping",
        "courses/id:7/extra",
        "courses/name:x",
    ],
)
def test_malformed_arguments_are_invalid(api: Api, path: str) -> None:
    api.signup()
    response = api.get(path)
    assert response.status_code == 400
    assert error_of(response) == "Invalid arguments provided"


def test_unknown_action(api: Api) -> None:
    response = api.get("enrolluser/user_id:1")
    assert response.status_code == 404
    assert error_of(response) == "The requested API action does not exist"


def test_a_get_action_sent_as_post_is_invalid(api: Api) -> None:
    assert error_of(api.post("courses", data={"x": "1"})) == "Invalid arguments provided"
    assert error_of(api.get("usersignup")) == "Invalid arguments provided"


# --- users, courses, enrollments: messages and non-idempotency --------------------------------------------


def test_signup_collisions(api: Api) -> None:
    api.signup()
    assert error_of(api.post("usersignup", data={**SIGNUP, "login": "other"})) == (
        "A user with the same email address already exists"
    )
    assert error_of(api.post("usersignup", data={**SIGNUP, "email": "Ana@Example.com", "login": "x"})) == (
        "A user with the same email address already exists"
    )
    assert error_of(api.post("usersignup", data={**SIGNUP, "email": "bruno@example.com"})) == (
        "A user with the same login already exists"
    )


def test_enrollment_is_not_idempotent(api: Api, fake_lms: Any) -> None:
    user_id = api.signup()["id"]
    first = api.post("addusertocourse", data={"user_id": user_id, "course_id": "7", "role": "learner"})
    assert first.status_code == 200
    assert first.json() == [{"user_id": user_id, "course_id": "7", "role": "learner"}]
    second = api.post("addusertocourse", data={"user_id": user_id, "course_id": "7", "role": "learner"})
    assert second.status_code == 400
    assert error_of(second) == "The requested user is already enrolled in this course"

    removed = api.get(f"removeuserfromcourse/user_id:{user_id},course_id:7")
    assert removed.status_code == 200
    assert removed.json() == {"user_id": user_id, "course_id": "7", "course_name": "Academy: Foundations"}
    again = api.get(f"removeuserfromcourse/user_id:{user_id},course_id:7")
    assert again.status_code == 400
    assert error_of(again) == "The requested user is not enrolled in this course"
    snapshot = fake_lms.state.snapshot()
    assert (
        snapshot["enrollments"] == []
        and snapshot["enrolled_total"] == 1
        and snapshot["unenrolled_total"] == 1
    )


def test_unknown_user_or_course(api: Api) -> None:
    user_id = api.signup()["id"]
    assert error_of(api.post("addusertocourse", data={"user_id": "999", "course_id": "7"})) == (
        "The requested user does not exist"
    )
    missing_course = api.post("addusertocourse", data={"user_id": user_id, "course_id": "404"})
    assert missing_course.status_code == 404
    assert error_of(missing_course) == "The requested course does not exist"
    assert error_of(api.get(f"removeuserfromcourse/user_id:{user_id},course_id:404")) == (
        "The requested course does not exist"
    )
    assert error_of(api.get("courses/id:404")) == "The requested course does not exist"
    assert (
        error_of(api.get("usersetstatus/user_id:999,status:inactive")) == "The requested user does not exist"
    )


def test_course_and_user_show_enrollments(api: Api) -> None:
    user_id = api.signup()["id"]
    api.post("addusertocourse", data={"user_id": user_id, "course_id": "9", "role": "learner"})
    course = api.get("courses/id:9").json()
    assert course["id"] == "9" and course["name"] == "Academy: Advanced Techniques"
    assert [(u["id"], u["role"]) for u in course["users"]] == [(user_id, "learner")]
    assert DATE.match(course["users"][0]["enrolled_on"])
    user = api.get("users/email:ana%40example.com").json()
    assert [(c["id"], c["role"]) for c in user["courses"]] == [("9", "learner")]
    assert {c["id"] for c in api.get("courses").json()} == {"7", "9", "11", "12"}


def test_user_status(api: Api, fake_lms: Any) -> None:
    user_id = api.signup()["id"]
    assert api.get(f"usersetstatus/user_id:{user_id},status:inactive").json() == {
        "user_id": user_id,
        "status": "inactive",
    }
    assert fake_lms.state.snapshot()["users"][0]["status"] == "inactive"
    api.get(f"usersetstatus/user_id:{user_id},status:active")
    assert api.get(f"users/id:{user_id}").json()["status"] == "active"


def test_concurrent_signups_of_one_email_create_one_user(api: Api, fake_lms: Any) -> None:
    answers: list[int] = []

    def sign_up(i: int) -> None:
        answers.append(api.post("usersignup", data={**SIGNUP, "login": f"ana{i}"}).status_code)

    threads = [threading.Thread(target=sign_up, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200] + [400] * 11
    assert len(fake_lms.state.snapshot()["users"]) == 1


# --- rate limit -------------------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_headers(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(rate_limit=3, rate_window_seconds=60)
    api = Api(fake)
    remaining = [api.get("courses").headers["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    limited = api.get("courses")
    assert limited.status_code == 429
    assert error_of(limited) == "API rate limit exceeded"
    assert limited.headers["X-RateLimit-Limit"] == "3"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    reset = int(limited.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    assert 1 <= int(limited.headers["Retry-After"]) <= 60

    status = api.get("ratelimit")  # not counted, still answers when the window is spent
    assert status.status_code == 200
    assert status.json()["limit"] == "3" and status.json()["remaining"] == "0"
    assert DATE.match(status.json()["formatted_reset"])
    assert api.get("courses", auth=None).status_code == 401  # auth before quota: not a 429
    snapshot = fake.state.snapshot()
    assert snapshot["rejected"] == {"rate_limited": 1, "unauthorized": 1}
    assert snapshot["calls"] == {"courses": 5, "ratelimit": 1}


def test_ratelimit_endpoint_is_not_counted(api: Api) -> None:
    first = api.get("ratelimit").json()
    for _ in range(5):
        assert api.get("ratelimit").status_code == 200
    assert api.get("ratelimit").json()["remaining"] == first["remaining"] == "200"
    assert api.get("courses").headers["X-RateLimit-Remaining"] == "199"


def test_window_reopens(fake_lms_factory: Callable[..., Any]) -> None:
    api = Api(fake_lms_factory(rate_limit=2, rate_window_seconds=0.3))
    assert [api.get("courses").status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(0.35)
    assert api.get("courses").status_code == 200


def test_hourly_quota(fake_lms_factory: Callable[..., Any]) -> None:
    api = Api(fake_lms_factory(hourly_quota=2))
    assert [api.get("courses").status_code for _ in range(3)] == [200, 200, 429]
    status = api.get("ratelimit").json()
    assert status["limit"] == "2" and status["remaining"] == "0"


# --- test controls ----------------------------------------------------------------------------------------


def test_state_endpoint_reports_users_enrollments_and_calls(api: Api, fake_lms: Any) -> None:
    user_id = api.signup()["id"]
    api.post("addusertocourse", data={"user_id": user_id, "course_id": "7"})
    api.post("addusertocourse", data={"user_id": user_id, "course_id": "7"})
    api.get("users/email:ana%40example.com")
    state = requests.get(f"{fake_lms.url}/_fake/state", timeout=5).json()
    assert state["users"] == [
        {
            "id": user_id,
            "login": "ana",
            "email": "ana@example.com",
            "first_name": "Ana",
            "last_name": "Souza",
            "status": "active",
        }
    ]
    assert [(e["user_id"], e["course_id"], e["role"]) for e in state["enrollments"]] == [
        (user_id, "7", "learner")
    ]
    assert state["calls"] == {"usersignup": 1, "addusertocourse": 2, "users": 1}
    assert state["calls_total"] == 4
    assert state["errors"] == {"addusertocourse: The requested user is already enrolled in this course": 1}
    assert state["enrolled_total"] == 1
    assert state["rate_limit"]["limit"] == 200 and state["rate_limit"]["remaining"] == 196
    assert "password" not in str(state).lower()


def test_reset_and_courses_controls(api: Api, fake_lms: Any) -> None:
    api.signup()
    added = requests.post(
        f"{fake_lms.url}/_fake/courses", json={"courses": [{"id": "21", "name": "Pivot Tables"}]}, timeout=5
    )
    assert added.json() == [{"id": "21", "name": "Pivot Tables"}]
    assert api.get("courses/id:21").json()["name"] == "Pivot Tables"
    assert (
        requests.post(f"{fake_lms.url}/_fake/courses", json={"courses": [{"id": "x"}]}, timeout=5).status_code
        == 400
    )
    state = requests.post(f"{fake_lms.url}/_fake/reset", timeout=5).json()
    assert state["users"] == [] and state["calls"] == {} and state["enrollments"] == []
    assert {c["id"] for c in state["courses"]} == {"7", "9", "11", "12"}


def test_failure_modes(api: Api, fake_lms: Any) -> None:
    control = f"{fake_lms.url}/_fake/failures"
    assert requests.post(control, json={"mode": "500", "count": 2}, timeout=5).json() == {
        "mode": "500",
        "seconds": 1.0,
        "count": 2,
        "endpoint": None,
    }
    assert [api.get("courses").status_code for _ in range(3)] == [500, 500, 200]
    assert error_of(api.get("courses", auth=None)) == "You need a valid user and password"

    requests.post(control, json={"mode": "429", "seconds": 3}, timeout=5)
    storm = [api.get("courses") for _ in range(3)]
    assert [r.status_code for r in storm] == [429, 429, 429]
    assert storm[0].headers["Retry-After"] == "3"
    requests.post(control, json={"mode": "none"}, timeout=5)
    assert api.get("courses").status_code == 200

    requests.post(control, json={"mode": "slow", "seconds": 0.3, "count": 1}, timeout=5)
    started = time.monotonic()
    assert api.signup()["login"] == "ana"
    assert time.monotonic() - started >= 0.3
    assert requests.post(control, json={"mode": "sideways"}, timeout=5).status_code == 400
    assert fake_lms.state.snapshot()["rejected"] == {"injected_500": 2, "injected_429": 3, "unauthorized": 1}


def test_slow_mode_applies_the_action_before_answering_late(api: Api, fake_lms: Any) -> None:
    user_id = api.signup()["id"]
    fake_lms.set_failure("slow", seconds=1.0, count=1)
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{fake_lms.base_url}/addusertocourse",
            data={"user_id": user_id, "course_id": "7"},
            auth=api.auth,
            timeout=0.2,
        )
    assert fake_lms.enrollments() == {(user_id, "7")}


def test_controls_answer_loopback_only() -> None:
    client = create_app("k").test_client()
    assert client.get("/_fake/state").status_code == 200
    assert client.get("/_fake/state", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    assert client.post("/_fake/reset", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403


def test_create_app_without_courses_and_with_custom_ones() -> None:
    bare = create_app("k", courses=[]).test_client()
    assert bare.get("/_fake/state").json["courses"] == []
    custom = create_app("k", courses=[{"id": 5, "name": "Excel"}]).test_client()
    assert custom.get("/_fake/state").json["courses"] == [{"id": "5", "name": "Excel"}]
