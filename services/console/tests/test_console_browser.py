"""The console in a real browser (headless Debian chromium, Playwright) against the services running in
this process: an operator finds why a buyer has no access (parked: product not mapped), maps the product
with the course picker after reading the dry run and sees the course enrolled; a quarantined webhook is
reprocessed after a fix; a dead letter is replayed once. Screenshots of every page go to
``CONSOLE_SCREENSHOT_DIR`` (docs/console/ for docs/console.md) or the test's temporary directory.

Skipped when chromium or playwright is missing, except with CI=true (install: tools/install_chromium.sh).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from inproc_stack import ADMIN_TOKEN, approval, wait_for

from coursebridge.events import new_event
from coursebridge.events.envelope import utc_now

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.timeout(180)


def _require_browser():
    in_ci = os.environ.get("CI", "").lower() == "true"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            pytest.fail("playwright is not installed")
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        if in_ci:
            pytest.fail(f"{CHROMIUM} is missing: run tools/install_chromium.sh")
        pytest.skip(f"{CHROMIUM} is missing (tools/install_chromium.sh installs it)")
    return sync_playwright


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("CONSOLE_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def normaliser_bug(monkeypatch):
    """Today's normaliser refuses Pix Automático renewals; ``fix()`` deploys the upgrade (in this process)."""
    import ingest.service_layer.intake as intake
    from ingest.domain.hotmart import NotNormalisable

    real = intake.normalise
    state = {"fixed": False}

    def normalise(body, **kwargs):
        payment = ((body.get("data") or {}).get("purchase") or {}).get("payment") or {}
        if payment.get("type") == "PIX_AUTOMATICO" and not state["fixed"]:
            raise NotNormalisable("unknown payment type PIX_AUTOMATICO")
        return real(body, **kwargs)

    monkeypatch.setattr(intake, "normalise", normalise)
    return lambda: state.update(fixed=True)


def test_an_operator_finds_why_and_fixes_it_in_the_browser(stack, shots, normaliser_bug):
    sync_playwright = _require_browser()
    url = stack.urls["console"]
    stack.webhook(approval("HP4001", product_id=4950, email="nina@example.com"))
    pix = approval("HP4002", product_id=4711, email="otto@example.com")
    pix["data"]["purchase"]["payment"] = {"type": "PIX_AUTOMATICO", "installments_number": 1}
    assert stack.webhook(pix)["status"] == "quarantined"
    stack.admin("enrollment", "PUT", "/admin/products/4711", json={"course_ids": ["9"]}).raise_for_status()
    from ingest.domain.hotmart import normalise

    letter = normalise(approval("HP4003", product_id=4711, email="pia@example.com"))
    stack.bus.publish(
        "enrollment.payments.dead-letter",
        new_event(
            letter.event_type,
            letter.data,
            source="coursebridge/ingest",
            correlation_id="HP4003",
            time=utc_now(),
        ),
        ordering_key="HP4003",
    )
    wait_for(
        lambda: stack.admin("enrollment", "GET", "/admin/deadletters").json()["items"], "the dead letter"
    )

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            external: list[str] = []
            visited: list[str] = []
            page.on(
                "request",
                lambda r: (
                    visited.append(r.url) or (None if r.url.startswith(url) else external.append(r.url))
                ),
            )

            # sign in (the page asked for is kept)
            page.goto(f"{url}/buyer?q=nina@example.com")
            assert "/signin" in page.url
            page.screenshot(path=str(shots / "signin.png"))
            page.fill("input[name=operator]", "maria@school.example")
            page.fill("input[name=token]", ADMIN_TOKEN)
            page.click("form[action='/signin'] button[type=submit]")
            page.wait_for_url(re.compile(r".*/buyer\?q=nina"))

            # why: parked, product not mapped
            for _ in range(100):
                if page.locator("tr.parked").count():
                    break
                page.wait_for_timeout(200)
                page.reload()
            parked = page.locator("tr.parked").inner_text()
            assert "parked: product 4950 not mapped since" in parked
            page.screenshot(path=str(shots / "buyer-parked.png"), full_page=True)

            # map it with the course picker, after the dry run
            page.click("tr.parked a.button")
            page.wait_for_url(re.compile(r".*/products/4950$"))
            page.check("input[name=course_ids][value='7']")
            page.click("#dry-run")
            page.wait_for_selector("#impact-result")
            impact = page.locator("#impact-result").inner_text()
            assert "1 student(s) would gain courses, 0 would lose" in impact and "course 7: +1" in impact
            page.screenshot(path=str(shots / "product-dry-run.png"), full_page=True)
            page.click("#save")
            page.wait_for_selector("p.flash.good")
            assert "Product 4950 mapped to courses 7" in page.locator("p.flash.good").inner_text()
            assert "maria@school.example" in page.locator("#audit").inner_text()

            # the course is enrolled in the timeline's access table
            wait_for(lambda: stack.lms.enrolled("nina@example.com") == {"7"}, "the enrollment")
            page.goto(f"{url}/buyer?q=nina@example.com")
            row = page.locator("#courses tr[data-course='7']").inner_text()
            assert "enrolled" in row and "granted by tx:HP4001" in row
            page.screenshot(path=str(shots / "buyer-enrolled.png"), full_page=True)

            # problems: the quarantined webhook, reprocessed after the fix
            page.goto(f"{url}/problems")
            assert "unknown payment type PIX_AUTOMATICO" in page.locator("#quarantine").inner_text()
            assert "HP4003" in page.locator("#deadletters").inner_text()
            page.screenshot(path=str(shots / "problems.png"), full_page=True)
            normaliser_bug()  # the normaliser upgrade is deployed
            page.click("#quarantine button[data-action=reprocess]")
            page.wait_for_selector("p.flash")
            assert "Reprocessed: accepted" in page.locator("p.flash").inner_text()
            assert "PIX_AUTOMATICO" not in page.locator("#quarantine").inner_text()

            # the dead letter, replayed once
            page.click("#deadletters button[data-action=replay]")
            page.wait_for_selector("p.flash")
            assert "Dead letter replayed" in page.locator("p.flash").inner_text()
            assert "HP4003" not in page.locator("#deadletters").inner_text()
            wait_for(lambda: stack.lms.enrolled("pia@example.com") == {"9"}, "the replayed approval")
            wait_for(lambda: stack.lms.enrolled("otto@example.com") == {"9"}, "the reprocessed approval")
            page.goto(f"{url}/buyer?q=HP4002")
            assert "enrolled" in page.locator("#courses").inner_text()

            page.goto(f"{url}/products")
            page.screenshot(path=str(shots / "products.png"), full_page=True)
            page.goto(f"{url}/")
            assert page.locator("text=running").count() >= 1
            page.screenshot(path=str(shots / "overview.png"), full_page=True)

            assert external == []  # every asset is served by the console
            assert not [u for u in visited if ADMIN_TOKEN in u]
            assert ADMIN_TOKEN not in page.content()
        finally:
            browser.close()
