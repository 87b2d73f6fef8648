"""The dashboard behind authentication (serve's default), in a real browser: without a session
it asks for a login; the address `fleetscope serve` printed logs it in with an HttpOnly,
SameSite=Strict cookie; a pasted token does too; a tenant's session sees only the tenant's
panels; logging out ends the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Server, free_port
from tests.test_browser import TIMEOUT_MS, VIEWPORT, panel, ready
from tests.test_browser import browser as browser  # the module-scoped chromium fixture

API = "/api/v1"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("login"), free_port(), auth=True).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def default_cpu(server: Server, token: str) -> int:
    insts = httpx.get(server.url + f"{API}/instrumentations", headers={"authorization": f"Bearer {token}"},
                      timeout=10).json()["instrumentations"]
    return next(i["id"] for i in insts if i["metric"] == "cpu.usage" and i["decomposition"] == ["mode"])


def test_without_a_session_the_dashboard_asks_to_log_in(secured: Server, fresh_page: Page) -> None:
    fresh_page.goto(secured.url + "/")
    expect(fresh_page.locator("#login")).to_be_visible()
    expect(fresh_page.locator("#conn")).to_have_attribute("data-state", "login")
    fresh_page.fill("#login-token", "fs_not-a-token")
    fresh_page.click("#login button[type=submit]")
    expect(fresh_page.locator(".login-error")).to_contain_text("not valid")
    assert fresh_page.locator("section.panel").count() == 0


def test_the_printed_link_logs_in_and_the_cookie_is_private(secured: Server, fresh_page: Page) -> None:
    admin = secured.token("browser-admin")
    cpu = default_cpu(secured, admin)
    fresh_page.goto(secured.login_link())
    assert fresh_page.url == secured.url + "/", "the token leaves the address bar"
    ready(fresh_page, cpu)
    cookies = fresh_page.context.cookies()
    session = next(c for c in cookies if c["name"] == "fleetscope_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert fresh_page.evaluate("document.cookie") == "", "scripts cannot read the session"
    # Writes with the cookie work from the page itself (the browser sends its Origin).
    made = fresh_page.evaluate("""async () => (await fetch('/api/v1/dashboards', {method: 'POST',
        headers: {'content-type': 'application/json'}, body: JSON.stringify({name: 'from the page',
        panels: []})})).status""")
    assert made == 201


def test_a_pasted_token_logs_in_and_a_tenant_sees_only_its_own(secured: Server, fresh_page: Page,
                                                              tmp_path: Path) -> None:
    admin = secured.token("browser-admin-2")
    headers = {"authorization": f"Bearer {admin}"}
    tenant = httpx.post(secured.url + f"{API}/tenants", headers=headers, timeout=10,
                        json={"name": "webtenant", "scope": 'container == "web-tenant-only"'})
    assert tenant.status_code == 201, tenant.text
    viewer = httpx.post(secured.url + f"{API}/tokens", headers=headers, timeout=10,
                        json={"name": "tenant-viewer", "role": "operator", "tenant": "webtenant"}).json()
    own = httpx.post(secured.url + f"{API}/instrumentations", timeout=10,
                     headers={"authorization": f"Bearer {viewer['token']}"},
                     json={"metric": "proc.cpu", "decomposition": ["execname"]})
    assert own.status_code == 201, own.text
    cpu = default_cpu(secured, admin)
    fresh_page.goto(secured.url + "/")
    fresh_page.fill("#login-token", viewer["token"])
    fresh_page.click("#login button[type=submit]")
    expect(panel(fresh_page, own.json()["id"])).to_be_visible()
    assert panel(fresh_page, cpu).count() == 0, "the operators' panels are not the tenant's"
    assert fresh_page.locator("section.panel").count() == 1
    fresh_page.click("#board-menu")
    fresh_page.get_by_role("menuitem", name="Log out").click()
    expect(fresh_page.locator("#login")).to_be_visible()
