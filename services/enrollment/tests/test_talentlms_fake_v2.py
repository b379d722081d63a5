"""The fake TalentLMS's API v2, the budget it shares with v1, and its fault controls, over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from talentlms_fake import create_app

VERSION = "2025-07-01"


class V2:
    """Raw v2 calls to one fake."""

    def __init__(self, fake: Any, *, key: str | None = None, version: str | None = VERSION) -> None:
        self.base = f"{fake.url}/api/v2"
        self.headers = {"X-API-Key": key or fake.api_key, "Accept": "application/json"}
        if version is not None:
            self.headers["X-API-Version"] = version

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.base}/{path}", headers=self.headers, timeout=5, **kwargs)

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(f"{self.base}/{path}", headers=self.headers, json=body, timeout=5)

    def delete(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return requests.delete(f"{self.base}/{path}", headers=self.headers, json=body, timeout=5, **kwargs)

    def wait_task(self, task_id: str, deadline: float = 5.0) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while True:
            data = self.get(f"tasks/{task_id}").json()["_data"]
            if data["status"] in ("completed", "failed") or time.monotonic() > end:
                return data
            time.sleep(0.05)


def new_user(i: int) -> dict[str, str]:
    return {"name": "Ana", "surname": f"Souza{i}", "login": f"ana{i}", "email": f"ana{i}@example.com"}


@pytest.fixture
def v2(fake_lms: Any) -> V2:
    return V2(fake_lms)


def control(fake: Any, path: str, method: str = "post", **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{fake.url}/_fake/{path}", timeout=5, **kwargs)


# --- auth, version, errors ---------------------------------------------------------------------------------


def test_key_and_version_are_required_with_json_errors(fake_lms: Any) -> None:
    missing = requests.get(f"{fake_lms.url}/api/v2/users", timeout=5)
    assert missing.status_code == 401
    assert missing.json() == {"type": "invalid_request_error", "message": "Invalid or missing API key"}
    assert V2(fake_lms, key="wrong").get("users").status_code == 401
    no_version = V2(fake_lms, version=None).get("users")
    assert no_version.status_code == 400 and "X-API-Version" in no_version.json()["message"]
    assert V2(fake_lms, version="2031-01-01").get("users").status_code == 200  # any date by default
    assert V2(fake_lms).get("no/such/thing").status_code == 404
    assert requests.get(f"{fake_lms.url}/api/v2/health", timeout=5).json() == {"_data": {"status": "ok"}}


def test_configured_versions_and_nested_error_style(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(api_versions=["2025-07-01"], v2_error_style="nested")
    assert V2(fake, version="2025-12-12").get("users").status_code == 400
    answer = V2(fake).get("users/999")
    assert answer.status_code == 404
    assert answer.json() == {
        "error": {"type": "invalid_request_error", "message": "The requested user does not exist"}
    }


# --- users -----------------------------------------------------------------------------------------------


def test_create_find_read_delete_user(v2: V2, fake_lms: Any) -> None:
    created = v2.post("users", {**new_user(1), "password": "S3cret!x"})
    assert created.status_code == 201
    user = created.json()["_data"]
    assert isinstance(user["id"], int) and user["name"] == "Ana" and user["status"] == "active"
    assert "password" not in created.text
    assert v2.post("users", {**new_user(1), "password": "x"}).json()["message"] == (
        "A user with the same email address already exists"
    )
    assert v2.post("users", {"email": "x@example.com"}).status_code == 400
    found = v2.get("users", params={"filter[email][eq]": "ANA1@example.com"}).json()
    assert [u["id"] for u in found["_data"]] == [user["id"]]
    assert v2.get("users", params={"filter[email][eq]": "nobody@example.com"}).json()["_data"] == []
    assert v2.get(f"users/{user['id']}").json()["_data"]["email"] == "ana1@example.com"
    assert v2.delete(f"users/{user['id']}").json()["_data"] == {"id": user["id"], "deleted": True}
    assert v2.get(f"users/{user['id']}").status_code == 404
    assert fake_lms.state.snapshot()["users"] == []


def test_paging_and_last_updated_filter(v2: V2, fake_lms: Any) -> None:
    for i in range(12):
        fake_lms.add_user(f"s{i}@example.com")
    first = v2.get("users").json()
    assert len(first["_data"]) == 10  # default page size
    assert first["_meta"]["pagination"] == {
        "page": 1,
        "page_size": 10,
        "total_items": 10,
        "total_pages": 2,
        "total_results": 12,
    }
    assert first["_links"]["prev"] is None and "page%5Bnumber%5D=2" in first["_links"]["next"]
    second = v2.get("users", params={"page[number]": 2}).json()
    assert len(second["_data"]) == 2 and second["_links"]["next"] is None
    assert v2.get("users", params={"page[size]": 101}).status_code == 400
    assert v2.get("users", params={"page[size]": 100}).status_code == 200

    time.sleep(1.1)  # last_updated has one-second resolution on the wire
    mark = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    later = fake_lms.add_user("late@example.com")
    recent = v2.get("users", params={"filter[last_updated][gte]": mark, "page[size]": 100}).json()
    assert [str(u["id"]) for u in recent["_data"]] == [later]
    assert v2.get("users", params={"filter[last_updated][gte]": "yesterday"}).status_code == 400


# --- enrollments -----------------------------------------------------------------------------------------


def test_enroll_is_not_idempotent_and_shows_in_user_courses(v2: V2, fake_lms: Any) -> None:
    user_id = int(fake_lms.add_user("ana@example.com"))
    assert v2.post("enrollments", {"user_id": user_id, "course_id": 7}).status_code == 201
    again = v2.post("enrollments", {"user_id": user_id, "course_id": 7})
    assert again.status_code == 400 and "already enrolled" in again.json()["message"]
    assert v2.get(f"users/{user_id}/courses").json() == {
        "_data": {"courses": [{"id": 7, "name": "Academy: Foundations"}]}
    }
    assert v2.post("enrollments", {"user_id": user_id, "course_id": 404}).json()["message"] == (
        "The requested course does not exist"
    )
    assert v2.delete("enrollments", {"user_id": user_id, "course_id": 7}).status_code == 200
    not_enrolled = v2.delete("enrollments", params={"user_id": user_id, "course_id": 7})
    assert not_enrolled.status_code == 400 and "not enrolled" in not_enrolled.json()["message"]
    assert v2.get("users/999/courses").status_code == 404


def test_goto_links_v1_and_v2(v2: V2, fake_lms: Any) -> None:
    user_id = fake_lms.add_user("ana@example.com")
    v2.post("enrollments", {"user_id": int(user_id), "course_id": 9})
    link = v2.get(f"courses/9/users/{user_id}/goto").json()["_data"]["goto_url"]
    assert link.startswith(fake_lms.url) and "course_id:9" in link
    v1 = requests.get(
        f"{fake_lms.base_url}/gotocourse/user_id:{user_id},course_id:9",
        auth=(fake_lms.api_key, ""),
        timeout=5,
    ).json()
    assert v1["goto_url"].startswith(fake_lms.url) and v1["goto_url"] != link  # a fresh one each time
    assert v2.get(f"courses/7/users/{user_id}/goto").status_code == 400  # not enrolled there


# --- batches and tasks -----------------------------------------------------------------------------------


def test_batch_users_run_in_the_background_with_per_item_results(v2: V2, fake_lms: Any) -> None:
    fake_lms.add_user("taken@example.com", login="taken")
    items = [new_user(1), new_user(2), {**new_user(3), "email": "taken@example.com"}, {"email": "bad"}]
    accepted = v2.post("batch/users", {"users": items})
    assert accepted.status_code == 202
    task_id = accepted.json()["_data"]["task_id"]
    assert v2.get(f"tasks/{task_id}").json()["_data"]["status"] in ("pending", "running")
    assert len(fake_lms.state.users) == 1  # nothing applied yet
    task = v2.wait_task(task_id)
    assert task["status"] == "completed"
    assert task["progress"] == {"total": 4, "processed": 4, "succeeded": 2, "failed": 2}
    results = task["results"]
    assert [r["status"] for r in results] == ["succeeded", "succeeded", "failed", "failed"]
    assert results[2]["message"] == "A user with the same email address already exists"
    assert {r["id"] for r in results[:2]} == {
        u["id"] for u in v2.get("users", params={"page[size]": 100}).json()["_data"] if u["login"] != "taken"
    }
    assert v2.get("tasks/nope").status_code == 404


def test_batch_enrollments_partially_fail(v2: V2, fake_lms: Any) -> None:
    ana, bia = int(fake_lms.add_user("ana@example.com")), int(fake_lms.add_user("bia@example.com"))
    v2.post("enrollments", {"user_id": ana, "course_id": 7})
    pairs = [(ana, 7), (ana, 9), (bia, 404), (999, 7), (bia, 12)]
    task_id = v2.post(
        "batch/enrollments", {"enrollments": [{"user_id": u, "course_id": c} for u, c in pairs]}
    ).json()["_data"]["task_id"]
    results = v2.wait_task(task_id)["results"]
    assert [(r["status"], r.get("message")) for r in results] == [
        ("failed", "The requested user is already enrolled in this course"),
        ("succeeded", None),
        ("failed", "The requested course does not exist"),
        ("failed", "The requested user does not exist"),
        ("succeeded", None),
    ]
    assert fake_lms.enrollments() == {(str(ana), "7"), (str(ana), "9"), (str(bia), "12")}
    assert fake_lms.state.snapshot()["batch_items"] == {"enrollments": 5}


def test_batches_hold_1_to_100_items(v2: V2) -> None:
    too_many = [{"user_id": 1, "course_id": 7}] * 101
    assert v2.post("batch/enrollments", {"enrollments": too_many}).status_code == 422
    assert v2.post("batch/enrollments", {"enrollments": []}).status_code == 422
    assert v2.post("batch/users", {"people": []}).status_code == 422
    assert v2.post("batch/groups", {"groups": []}).status_code == 404


def test_a_task_can_be_made_to_fail_whole(v2: V2, fake_lms: Any) -> None:
    control(fake_lms, "tasks", json={"fail_next": 1, "delay_seconds": 0})
    task_id = v2.post("batch/users", {"users": [new_user(1)]}).json()["_data"]["task_id"]
    assert v2.wait_task(task_id)["status"] == "failed"
    assert fake_lms.state.users == {}


# --- one budget for v1 and v2 ------------------------------------------------------------------------------


def test_v1_and_v2_share_the_short_window_and_the_quota(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(hourly_quota=4, quota_window_seconds=30, task_delay_seconds=0)
    v2 = V2(fake)
    first = v2.get("users")
    # v2's X-RateLimit-* describe the quota (the fake's choice when a quota is set)
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("4", "3")
    assert time.time() + 25 < int(first.headers["X-RateLimit-Reset"]) <= time.time() + 31
    requests.get(f"{fake.base_url}/courses", auth=(fake.api_key, ""), timeout=5)
    task_id = v2.post("batch/users", {"users": [new_user(1)]}).json()["_data"]["task_id"]
    assert v2.get(f"tasks/{task_id}").headers["X-RateLimit-Remaining"] == "0"  # task polls count too
    over = v2.get("users")
    assert over.status_code == 429 and int(over.headers["Retry-After"]) > 20
    status = requests.get(f"{fake.base_url}/ratelimit", auth=(fake.api_key, ""), timeout=5).json()
    assert (status["limit"], status["remaining"]) == ("4", "0")
    snapshot = fake.state.snapshot()
    assert snapshot["responses_429"] == 1
    assert snapshot["calls"]["GET /v2/users"] == 2 and snapshot["calls"]["GET /v2/tasks/{id}"] == 1


def test_quota_window_reopens(fake_lms_factory: Callable[..., Any]) -> None:
    fake = fake_lms_factory(hourly_quota=1, quota_window_seconds=0.3)
    v2 = V2(fake)
    assert [v2.get("users").status_code for _ in range(2)] == [200, 429]
    time.sleep(0.35)
    assert v2.get("users").status_code == 200


# --- fault controls ----------------------------------------------------------------------------------------


def test_acted_500_takes_effect_then_answers_500(v2: V2, fake_lms: Any) -> None:
    user_id = int(fake_lms.add_user("ana@example.com"))
    answer = control(
        fake_lms, "failures", json={"mode": "acted_500", "count": 1, "endpoint": "POST /v2/enrollments"}
    )
    assert answer.json()["endpoint"] == "POST /v2/enrollments"
    assert v2.get("users").status_code == 200  # another endpoint: not affected, not consumed
    assert v2.post("enrollments", {"user_id": user_id, "course_id": 7}).status_code == 500
    assert fake_lms.enrollments() == {(str(user_id), "7")}
    assert v2.post("enrollments", {"user_id": user_id, "course_id": 7}).status_code == 400  # already
    assert fake_lms.state.snapshot()["rejected"] == {"injected_acted_500": 1}


def test_rejected_key_for_a_while(v2: V2, fake_lms: Any) -> None:
    assert control(fake_lms, "auth", json={"reject_seconds": 0.4}).status_code == 200
    assert v2.get("users").status_code == 401
    assert (
        requests.get(f"{fake_lms.base_url}/courses", auth=(fake_lms.api_key, ""), timeout=5).status_code
        == 401
    )
    time.sleep(0.45)
    assert v2.get("users").status_code == 200
    assert control(fake_lms, "auth", json={"reject_seconds": "soon"}).status_code == 400
    assert fake_lms.state.snapshot()["rejected"] == {"unauthorized": 2}


def test_admin_controls_delete_user_enroll_by_hand_remove_course(v2: V2, fake_lms: Any) -> None:
    user_id = fake_lms.add_user("ana@example.com")
    assert control(fake_lms, "enrollments", json={"user_id": user_id, "course_id": "11"}).status_code == 200
    assert control(fake_lms, "enrollments", json={"user_id": user_id, "course_id": "11"}).status_code == 400
    assert [c["id"] for c in v2.get(f"users/{user_id}/courses").json()["_data"]["courses"]] == [11]
    assert control(fake_lms, "courses/11", "delete").status_code == 200
    assert v2.get(f"users/{user_id}/courses").json()["_data"]["courses"] == []
    assert control(fake_lms, "courses/11", "delete").status_code == 404
    assert control(fake_lms, f"users/{user_id}", "delete").status_code == 200
    assert v2.get(f"users/{user_id}").status_code == 404
    snapshot = fake_lms.state.snapshot()
    assert snapshot["calls"] == {"GET /v2/users/{id}/courses": 2, "GET /v2/users/{id}": 1}  # controls: free


def test_cli_flags(tmp_path: Any) -> None:
    probe = (
        "import sys; from talentlms_fake.__main__ import _options; "
        "o = _options(sys.argv[1:]); print(o.quota, o.quota_window, o.task_delay, o.api_version)"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "--quota",
            "2000",
            "--quota-window",
            "60",
            "--api-version",
            "2025-07-01",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.split() == ["2000", "60.0", "0.2", "['2025-07-01']"]


def test_create_app_validates_its_options() -> None:
    with pytest.raises(ValueError):
        create_app("k", v2_error_style="sideways")
    with pytest.raises(ValueError):
        create_app("k", quota_window_seconds=0)
