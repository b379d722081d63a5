"""TalentLMS API v2: batches of up to 100 (users, enrollments), their background tasks, and paged reads.

Wire format (``shared/reference/talentlms-api-v2.md``): JSON bodies, ``X-API-Key`` and ``X-API-Version``
headers, single objects under ``_data``, lists as ``_data`` + ``_links`` + ``_meta.pagination`` with
``page[number]`` / ``page[size]`` (at most 100). Error bodies carry ``type`` and ``message``, at the top
or under ``error`` (unconfirmed which): both are read.

Much of v2 is unconfirmed, so every answer is read defensively:

- a batch answers with a task id: looked for as ``_data.task_id``, ``_data.id``, ``task_id``, ``id``
  (a 2xx without any is ``LmsInDoubt``: the batch may run, and nobody can follow it);
- a task's state is read from ``status`` / ``state`` and mapped to pending/running/completed/failed;
  unknown words fall back on the progress figures, else "running" (keep polling);
- per-item results are read from ``results`` / ``items`` / ``errors``; an item's ``ok`` is None when the
  task says nothing about it (the caller reads TalentLMS back). "already enrolled" and "already exists"
  items are successes (``ok=True``), as for single calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
import structlog

from coursebridge.runtime.logging import register_secret
from enrollment.adapters.budget import CallBudget
from enrollment.adapters.lms_http import (
    ALREADY_ENROLLED,
    EMAIL_EXISTS,
    LOGIN_EXISTS,
    NOT_ENROLLED,
    USER_DOES_NOT_EXIST,
    Refusal,
    TalentLmsError,
    Transport,
    count,
    error_message,
    json_or_none,
    refusal_error,
)
from enrollment.service_layer.ports import (
    LmsInDoubt,
    LmsUser,
    NewUser,
    TaskItemResult,
    TaskState,
    TaskStatus,
)

log = structlog.get_logger(__name__)

DEFAULT_API_VERSION = "2025-07-01"
BATCH_MAX_ITEMS = 100
PAGE_SIZE = 100
MAX_PAGES = 10_000  # a guard against a server whose paging never ends

_STATES: dict[str, TaskState] = {
    **dict.fromkeys(("pending", "queued", "new", "created", "waiting", "scheduled"), "pending"),
    **dict.fromkeys(("running", "in_progress", "processing", "started", "active"), "running"),
    **dict.fromkeys(
        (
            "completed",
            "complete",
            "done",
            "finished",
            "success",
            "succeeded",
            "partially_completed",
            "partial",
            "completed_with_errors",
        ),
        "completed",
    ),
    **dict.fromkeys(("failed", "failure", "error", "errored", "aborted", "cancelled", "canceled"), "failed"),
}
_ITEM_OK = {"succeeded", "success", "ok", "completed", "done", "created", "updated", "enrolled", "true"}
_ITEM_FAILED = {"failed", "failure", "error", "errored", "rejected", "false"}
_ALREADY = (ALREADY_ENROLLED, EMAIL_EXISTS, LOGIN_EXISTS)


class TalentLmsV2Client:
    """The TalentLMS v2 API. Thread-safe; shares the v1 client's ``CallBudget`` (one portal, one budget)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        budget: CallBudget,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url or not api_key:
            raise ValueError("TalentLMS v2 needs a base URL and an API key")
        register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.api_version = api_version
        self._headers = {
            "X-API-Key": api_key,
            "X-API-Version": api_version,
            "Accept": "application/json",
        }
        self._transport = Transport(budget, timeout=timeout, session=session)

    def close(self) -> None:
        self._transport.close()

    # --- batches -----------------------------------------------------------------------------------------

    def batch_upsert_users(self, users: Sequence[NewUser]) -> str:
        """Start a task creating these users (1 to 100); the task id (ids: ``users_updated_since``)."""
        _check_batch(len(users))
        items = [
            {
                "login": u.login,
                "name": u.first_name,
                "surname": u.last_name,
                "email": u.email,
                "password": u.password,
            }
            for u in users
        ]
        return self._start_task("batch_users", "batch/users", {"users": items})

    def batch_enroll(self, pairs: Sequence[tuple[str, str]]) -> str:
        """Start a task enrolling these (user id, course id) pairs (1 to 100); the task id."""
        _check_batch(len(pairs))
        items = [{"user_id": _int_id(u), "course_id": _int_id(c)} for u, c in pairs]
        return self._start_task("batch_enroll", "batch/enrollments", {"enrollments": items})

    def task_status(self, task_id: str) -> TaskStatus:
        """``GET tasks/{id}`` (counted against the quota like any call), read defensively."""
        try:
            body = self._send("task_status", "GET", f"tasks/{quote(task_id, safe='')}")
        except Refusal as refusal:
            raise refusal_error("task_status", refusal) from None
        count("task_status", "ok")
        return parse_task(body)

    # --- users -------------------------------------------------------------------------------------------

    def find_user_by_email(self, email: str) -> LmsUser | None:
        try:
            body = self._send("find_user", "GET", "users", params={"filter[email][eq]": email})
        except Refusal as refusal:
            if refusal.says(USER_DOES_NOT_EXIST) or (refusal.status == 404 and refusal.says("user")):
                count("find_user", "ok")
                return None
            raise refusal_error("find_user", refusal) from None
        users = [_user(item) for item in _list(body, "find_user")]
        count("find_user", "ok")
        return next((u for u in users if u.email.lower() == email.lower()), None)

    def users_updated_since(self, since_epoch: float) -> list[LmsUser]:
        """Every user created or updated at or after ``since_epoch`` (to the second), all pages."""
        since = datetime.fromtimestamp(math.floor(since_epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        users: list[LmsUser] = []
        page = 1
        while page <= MAX_PAGES:
            params = {
                "filter[last_updated][gte]": since,
                "page[number]": str(page),
                "page[size]": str(PAGE_SIZE),
            }
            try:
                body = self._send("users_updated", "GET", "users", params=params)
            except Refusal as refusal:
                raise refusal_error("users_updated", refusal) from None
            items = _list(body, "users_updated")
            users.extend(_user(item) for item in items)
            count("users_updated", "ok")
            if not items or not _has_next(body, page, len(items)):
                break
            page += 1
        return users

    def user_courses(self, user_id: str) -> set[str]:
        try:
            body = self._send("user_courses", "GET", f"users/{_int_id(user_id)}/courses")
        except Refusal as refusal:
            if refusal.status == 404 and not refusal.says("course"):
                refusal = Refusal("The requested user does not exist", 404)
            raise refusal_error("user_courses", refusal, lms_user_id=user_id) from None
        data = body.get("_data") if isinstance(body, dict) else None
        courses = data.get("courses") if isinstance(data, dict) else data
        if not isinstance(courses, list):
            count("user_courses", "in_doubt")
            raise LmsInDoubt("TalentLMS v2 answered a user's courses in an unexpected shape")
        count("user_courses", "ok")
        return {str(c["id"]) for c in courses if isinstance(c, dict) and "id" in c}

    # --- single enrollments (v1 is the facade's path; these exist for parity and tests) -----------------

    def enroll(self, user_id: str, course_id: str) -> bool:
        body = {"user_id": _int_id(user_id), "course_id": _int_id(course_id)}
        try:
            self._send("enroll_v2", "POST", "enrollments", json=body)
        except Refusal as refusal:
            if refusal.says(ALREADY_ENROLLED):
                count("enroll_v2", "already")
                return False
            raise refusal_error("enroll_v2", refusal, lms_user_id=user_id, course_id=course_id) from None
        count("enroll_v2", "ok")
        return True

    def unenroll(self, user_id: str, course_id: str) -> bool:
        body = {"user_id": _int_id(user_id), "course_id": _int_id(course_id)}
        try:
            self._send("unenroll_v2", "DELETE", "enrollments", json=body)
        except Refusal as refusal:
            if refusal.says(NOT_ENROLLED):
                count("unenroll_v2", "already")
                return False
            raise refusal_error("unenroll_v2", refusal, lms_user_id=user_id, course_id=course_id) from None
        count("unenroll_v2", "ok")
        return True

    def course_link(self, user_id: str, course_id: str) -> str:
        path = f"courses/{_int_id(course_id)}/users/{_int_id(user_id)}/goto"
        try:
            body = self._send("course_link_v2", "GET", path)
        except Refusal as refusal:
            raise refusal_error("course_link_v2", refusal, lms_user_id=user_id, course_id=course_id) from None
        data = body.get("_data", body) if isinstance(body, dict) else None
        url = next(
            (data.get(k) for k in ("goto_url", "url", "link") if isinstance(data, dict) and data.get(k)), None
        )
        if not isinstance(url, str):
            count("course_link_v2", "in_doubt")
            raise LmsInDoubt("TalentLMS v2 answered goto without a link")
        count("course_link_v2", "ok")
        return url

    # --- plumbing ----------------------------------------------------------------------------------------

    def _start_task(self, call: str, path: str, body: dict[str, Any]) -> str:
        try:
            answer = self._send(call, "POST", path, json=body)
        except Refusal as refusal:
            raise refusal_error(call, refusal) from None
        task_id = _task_id(answer)
        if task_id is None:
            count(call, "in_doubt")
            raise LmsInDoubt(f"TalentLMS accepted {call} without a task id: read TalentLMS back")
        count(call, "ok")
        return task_id

    def _send(self, call: str, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a 2xx answer; ``Refusal`` for an error answer (any other non-429/401/5xx)."""
        response = self._transport.send(
            call, method, f"{self.base_url}/{path}", headers=self._headers, **kwargs
        )
        body = json_or_none(response)
        status = response.status_code
        if 200 <= status < 300:
            if body is None and status != 204:
                count(call, "in_doubt")
                raise LmsInDoubt(f"TalentLMS answered {call} with an unreadable body")
            return body if body is not None else {}
        message = error_message(body)
        if message is not None:
            raise Refusal(message, status)
        count(call, "permanent")
        log.error("lms_call_failed", call=call, outcome="permanent", status=status)
        raise TalentLmsError(
            f"TalentLMS answered {call} with HTTP {status} and no error message"
            " (check TALENTLMS_V2_BASE_URL)",
            call=call,
            status=status,
        )


# --- reading answers ---------------------------------------------------------------------------------------


def parse_task(body: Any) -> TaskStatus:
    """A ``TaskStatus`` from whatever ``GET tasks/{id}`` answered (see the module docstring)."""
    data = body.get("_data", body) if isinstance(body, Mapping) else {}
    if not isinstance(data, Mapping):
        data = {}
    progress = data.get("progress") if isinstance(data.get("progress"), Mapping) else {}
    total = _first_int(progress, "total", "total_items") or _first_int(data, "total", "total_items")
    processed = _first_int(progress, "processed", "completed", "done") or _first_int(data, "processed")

    raw_state = next((data[k] for k in ("status", "state", "task_status") if k in data), None)
    if isinstance(raw_state, Mapping):
        raw_state = raw_state.get("name") or raw_state.get("status")
    state = (
        _STATES.get(str(raw_state).strip().lower().replace(" ", "_").replace("-", "_")) if raw_state else None
    )
    if state is None:
        if total and processed is not None and processed >= total:
            state = "completed"
        elif processed == 0:
            state = "pending"
        else:
            state = "running"

    items: list[TaskItemResult] = []
    entries, only_errors = _item_entries(data)
    for position, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        index = _first_int(entry, "index", "position", "item_index")
        items.append(_item(position if index is None else index, entry, failed_list=only_errors))
    if state == "completed" and (not items or only_errors) and total:
        known = {item.index for item in items}
        items.extend(TaskItemResult(i, None) for i in range(total) if i not in known)
        items.sort(key=lambda item: item.index)
    return TaskStatus(state=state, items=tuple(items))


def _item_entries(data: Mapping[str, Any]) -> tuple[list[Any], bool]:
    for key in ("results", "items", "item_results"):
        if isinstance(data.get(key), list):
            return data[key], False
    for key in ("errors", "failed_items", "failures"):
        if isinstance(data.get(key), list):
            return data[key], True
    return [], False


def _item(index: int, entry: Mapping[str, Any], *, failed_list: bool) -> TaskItemResult:
    error = entry.get("error")
    message = entry.get("message") or (
        error.get("message") if isinstance(error, Mapping) else error if isinstance(error, str) else None
    )
    text = str(message) if message else None
    ok: bool | None = None
    status = entry.get("status", entry.get("state"))
    if isinstance(status, str) and status.strip().lower() in _ITEM_OK:
        ok = True
    elif isinstance(status, str) and status.strip().lower() in _ITEM_FAILED:
        ok = False
    for key in ("success", "ok", "succeeded"):
        if isinstance(entry.get(key), bool):
            ok = entry[key]
    if ok is None and (error or failed_list):
        ok = False
    if text is not None and any(fragment in text.lower() for fragment in _ALREADY):
        ok = True  # the goal holds: the user exists, the enrollment is there (same rule as single calls)
    return TaskItemResult(index=index, ok=ok, message=text)


def _task_id(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    data = body.get("_data")
    for source in (data, body):
        if isinstance(source, Mapping):
            for key in ("task_id", "taskId", "id"):
                value = source.get(key)
                if isinstance(value, (str, int)) and str(value):
                    return str(value)
            task = source.get("task")
            if isinstance(task, Mapping) and task.get("id") is not None:
                return str(task["id"])
    return None


def _list(body: Any, call: str) -> list[Any]:
    data = body.get("_data") if isinstance(body, Mapping) else None
    if not isinstance(data, list):
        count(call, "in_doubt")
        raise LmsInDoubt(f"TalentLMS v2 answered {call} without a _data list")
    return data


def _has_next(body: Mapping[str, Any], page: int, got: int) -> bool:
    meta = body.get("_meta")
    pagination = meta.get("pagination") if isinstance(meta, Mapping) else None
    if isinstance(pagination, Mapping):
        pages = _first_int(pagination, "total_pages")
        if pages is not None:
            return page < pages
    links = body.get("_links")
    if isinstance(links, Mapping) and "next" in links:
        return bool(links["next"])
    return got >= PAGE_SIZE


def _user(item: Any) -> LmsUser:
    if not isinstance(item, Mapping) or item.get("id") is None:
        raise LmsInDoubt("TalentLMS v2 answered a user in an unexpected shape")
    status = item.get("status", item.get("active", "active"))
    active = status if isinstance(status, bool) else str(status).lower() in ("active", "1", "true")
    return LmsUser(
        id=str(item["id"]), email=str(item.get("email", "")), login=str(item.get("login", "")), active=active
    )


def _first_int(source: Any, *keys: str) -> int | None:
    if not isinstance(source, Mapping):
        return None
    for key in keys:
        value = source.get(key)
        if isinstance(value, bool):
            continue
        try:
            return int(value)
        except (TypeError, ValueError):
            continue
    return None


def _int_id(value: str) -> int | str:
    """v2 ids are integers; anything else is sent as is (TalentLMS will say what it thinks)."""
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def _check_batch(size: int) -> None:
    if not 1 <= size <= BATCH_MAX_ITEMS:
        raise ValueError(f"a TalentLMS batch holds 1 to {BATCH_MAX_ITEMS} items, not {size}")
