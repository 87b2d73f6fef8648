"""`/api/v1/docs` in a real browser (Debian's chromium, headless) with every request that does
not go to the server blocked: Swagger UI must render the API's operations from the package's
own assets alone."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Route, expect

from tests.conftest import Server
from tests.test_browser import VIEWPORT, Console
from tests.test_browser import browser as browser  # the module-scoped chromium fixture

API = "/api/v1"


@pytest.fixture
def offline_page(browser: Browser, server: Server) -> Iterator[tuple]:
    """A page whose requests to anywhere but the server are aborted (and recorded)."""
    context = browser.new_context(viewport=VIEWPORT)
    own = urlsplit(server.url).netloc
    blocked: list[str] = []

    def route(r: Route) -> None:
        if urlsplit(r.request.url).netloc == own:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page, blocked
    context.close()


def test_swagger_ui_renders_offline(server: Server, offline_page: tuple, client: httpx.Client) -> None:
    page, blocked = offline_page
    console = Console(page)
    page.goto(server.url + f"{API}/docs")
    doc = client.get(f"{API}/openapi.json").json()
    expected = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    blocks = page.locator(".opblock")
    expect(blocks.first).to_be_visible()
    expect(blocks).to_have_count(len(expected))
    shown = set()
    for i in range(blocks.count()):
        block = blocks.nth(i)
        method = block.locator(".opblock-summary-method").inner_text().strip()
        path = block.locator(".opblock-summary-path").get_attribute("data-path")
        shown.add((method, path))
    assert shown == expected
    expect(page.locator(".info .title")).to_contain_text("fleetscope")
    assert blocked == [], f"the docs page asked for outside resources: {blocked}"
    assert console.errors == []



