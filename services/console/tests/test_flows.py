"""The console's flows over HTTP against the real services: why a buyer has no access and the fix."""

from __future__ import annotations

import re

from conftest import csrf_of
from inproc_stack import approval, wait_for

from coursebridge.events import new_event
from coursebridge.events.envelope import utc_now


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _page_with(http, url: str, needle: str, what: str) -> str:
    """The page once it says ``needle`` (the workers get there in their own time), else fail."""

    def look() -> str | None:
        html = http.get(url, timeout=10).text
        return html if needle in _text(html) or needle in html else None

    return wait_for(look, what)


def test_parked_buyer_is_explained_then_mapped_after_the_dry_run_and_enrolled(stack, operator):
    url = stack.urls["console"]
    stack.webhook(approval("HP2001", product_id=4801, email="bia@example.com"))
    page = _text(
        _page_with(
            operator,
            url + "/buyer?q=bia@example.com",
            "parked: product 4801 not mapped since",
            "the purchase to be parked",
        )
    )
    assert "Hotmart PURCHASE_APPROVED received" in page
    by_tx = _text(operator.get(url + "/buyer?q=HP2001", timeout=10).text)
    assert "bia@example.com" in by_tx and "parked" in by_tx

    product = operator.get(url + "/products/4801", timeout=10).text
    assert "Watercolour Basics" in product  # the course picker is TalentLMS's course list
    token = csrf_of(product)
    impact = operator.post(
        url + "/products/4801/dry-run", data={"csrf_token": token, "course_ids": ["7"]}, timeout=10
    )
    assert "1</strong> student(s) would gain" in impact.text and "course 7: +1" in impact.text
    assert "4801" not in _text(operator.get(url + "/products", timeout=10).text).split("Product Courses")[-1]

    saved = operator.post(
        url + "/products/4801",
        data={"csrf_token": token, "course_ids": ["7"], "back": "/products/4801"},
        timeout=10,
    )
    assert "Product 4801 mapped to courses 7" in saved.text
    assert "maria@school.example" in _text(saved.text)  # the audit history names the operator
    wait_for(lambda: stack.lms.enrolled("bia@example.com") == {"7"}, "the enrollment in TalentLMS")
    final = _text(operator.get(url + "/buyer?q=bia@example.com", timeout=10).text)
    assert re.search(r"7 · Watercolour Basics enrolled granted by tx:HP2001", final), final


def test_a_quarantined_webhook_is_reprocessed_from_the_problems_page(stack, operator, monkeypatch):
    url = stack.urls["console"]
    broken = approval("HP2002", email="caio@example.com")
    broken["data"]["purchase"]["transaction"] = None
    answer = stack.webhook(broken)
    assert answer["status"] == "quarantined"
    problems = operator.get(url + "/problems", timeout=10).text
    assert answer["reason"][:20] in _text(problems)
    quarantine_id = re.search(r"/actions/quarantine/([^/]+)/reprocess", problems).group(1)
    # reprocessing with today's normaliser: the body still lacks its transaction, so it stays, with why
    response = operator.post(
        url + f"/actions/quarantine/{quarantine_id}/reprocess",
        data={"csrf_token": csrf_of(problems), "back": "/problems"},
        timeout=10,
    )
    assert "Still quarantined" in response.text


def test_a_dead_letter_is_replayed_once_from_the_buyer_page(stack, operator):
    url = stack.urls["console"]
    stack.admin("enrollment", "PUT", "/admin/products/4802", json={"course_ids": ["9"]}).raise_for_status()
    from ingest.domain.hotmart import normalise

    normalised = normalise(approval("HP2003", product_id=4802, email="dora@example.com"))
    event = new_event(
        normalised.event_type,
        normalised.data,
        source="coursebridge/ingest",
        correlation_id=normalised.ordering_key,
        time=utc_now(),
    )
    stack.bus.publish("enrollment.payments.dead-letter", event, ordering_key=normalised.ordering_key)
    page = _page_with(
        operator,
        url + "/buyer?q=HP2003",
        "Dead letter in enrollment.payments",
        "the dead letter on the buyer page",
    )
    replay = re.search(r'action="(/actions/deadletters/enrollment/[^"]+/replay)"', page).group(1)
    done = operator.post(
        url + replay, data={"csrf_token": csrf_of(page), "back": "/buyer?q=HP2003"}, timeout=10
    )
    assert "Dead letter replayed" in done.text
    wait_for(lambda: stack.lms.enrolled("dora@example.com") == {"9"}, "the replayed approval's enrollment")
    again = operator.post(url + replay, data={"csrf_token": csrf_of(page), "back": "/problems"}, timeout=10)
    assert "Dead letter not_held" in again.text  # once replayed, a letter is never handled again
    assert "Dead letter in enrollment.payments" not in operator.get(url + "/buyer?q=HP2003", timeout=10).text


def test_overview_reports_queue_dispatcher_and_every_service(stack, operator):
    text = _text(operator.get(stack.urls["console"] + "/", timeout=10).text)
    for service in ("ingest", "enrollment", "subscription", "analytics"):
        assert f"{service} ready" in text
    assert "TalentLMS queue" in text and "running" in text
