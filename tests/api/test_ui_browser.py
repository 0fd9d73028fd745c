"""The dashboard in a real browser: Debian's chromium driven by Playwright against the
service on loopback. Screenshots go to the test's tmp folder (``VIGIL_SCREENSHOTS``, when
set, names a folder to copy them to)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Service
from tests.api.test_ui import recorded_rollout

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="the playwright package is not installed")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="no system chromium (scripts/setup.sh installs it)")
STEP = 20_000  # ms: each browser step's bound


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu"], timeout=STEP)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    keep = os.environ.get("VIGIL_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in folder.glob("*.png"):
            shutil.copy(shot, Path(keep) / shot.name)


def sign_in(browser: Any, service: Service, who: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(STEP)
    page.goto(f"{service.url}/ui/fleet")
    assert page.url.endswith("/ui/login")  # no session yet
    page.fill("#token", service.world.tokens[who])
    page.click("#sign-in")
    page.wait_for_load_state()
    return page


def test_an_admin_sees_the_fleet_timeline_and_decisions(browser: Any, service: Service,
                                                        shots: Path) -> None:
    service.submit("hv-reject", "acme")
    service.submit("hv-delay", "globex")
    page = sign_in(browser, service, "ops")
    assert page.url.endswith("/ui/fleet")
    hosts = page.locator("#hosts tr")
    assert hosts.count() == 6  # the header and five hosts
    assert "affirming" in page.locator("#host-hv-admit").inner_text()
    first = page.locator("#vulns tr").nth(1).inner_text()
    assert "CVE-2099-0002" in first and "KEV" in first
    assert "hv-patch" in page.locator("#awaiting").inner_text()
    page.screenshot(path=str(shots / "dashboard-fleet.png"), full_page=True)
    page.check("input[name=kev]")
    page.click("form.filters button")
    page.wait_for_load_state()
    assert page.locator("#hosts tr").count() == 2
    assert page.locator("#host-hv-reject").count() == 1
    page.click("text=Timeline")
    page.wait_for_load_state()
    assert page.locator("#timeline circle").count() >= 1
    assert "2024-07-04" in page.locator("#fix-dates").inner_text()
    assert "CVE-2099-0001" in page.locator("#queue").inner_text()  # globex's delay
    page.screenshot(path=str(shots / "dashboard-timeline.png"), full_page=True)
    rid = recorded_rollout(service)
    page.click("text=Rollouts")
    page.wait_for_load_state()
    assert "completed" in page.locator(f"#rollout-{rid}").inner_text()
    page.screenshot(path=str(shots / "dashboard-rollouts.png"), full_page=True)
    page.click("text=Decisions")
    page.wait_for_load_state()
    assert "verifies" in page.locator("#chain").inner_text()
    page.fill("input[name=tenant]", "globex")
    page.click("form.filters button")
    page.wait_for_load_state()
    rows = page.locator("#decisions").inner_text()
    assert "globex" in rows and "acme" not in rows
    page.screenshot(path=str(shots / "dashboard-decisions.png"), full_page=True)
    page.close()


def test_a_tenant_opens_a_report_approves_and_cannot_see_another(
        browser: Any, service: Service, shots: Path) -> None:
    ours = service.submit("hv-admit", "acme")["request_id"]
    theirs = service.submit("hv-patch", "globex")["request_id"]
    page = sign_in(browser, service, "acme")
    assert page.url.endswith("/ui/requests")
    listing = page.locator("#requests").inner_text()
    assert ours in listing and theirs not in listing
    page.screenshot(path=str(shots / "dashboard-requests.png"), full_page=True)
    page.click(f"a[href='/ui/requests/{ours}']")
    page.wait_for_load_state()
    assert page.locator("#status").inner_text() == "awaiting_approval"
    page.click("#report-link")
    page.wait_for_load_state()
    assert "hv-admit" in page.content()
    page.screenshot(path=str(shots / "dashboard-report.png"), full_page=True)
    page.go_back()
    page.wait_for_load_state()
    page.click("#approve")
    page.wait_for_load_state()
    service.wait(ours, lambda b: b["status"] == "launched")
    page.reload()
    assert page.locator("#status").inner_text() == "launched"
    page.screenshot(path=str(shots / "dashboard-approved.png"), full_page=True)
    answer = page.goto(f"{service.url}/ui/requests/{theirs}")
    assert answer is not None and answer.status == 404
    answer = page.goto(f"{service.url}/ui/requests/{theirs}/report")
    assert answer is not None and answer.status == 404
    answer = page.goto(f"{service.url}/ui/fleet")
    assert answer is not None and answer.status == 403
    assert page.locator("#hosts").count() == 0
    page.close()
    assert service.call("GET", f"/v1/provisioning-requests/{theirs}", "globex").json()[
        "status"] == "awaiting_approval"
