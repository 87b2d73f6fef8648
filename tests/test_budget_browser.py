"""An instrumentation paused over its time budget shows its warning where users look: the
instrumentation's API answer, `fleetscope inst show`, and its dashboard panel (a real
`fleetscope serve` with a budget of 1 ms per tick, which its process breakdowns exceed)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import VENV_BIN, Server, free_port, wait_for
from tests.test_browser import browser as browser
from tests.test_browser import page as page
from tests.test_browser import panel

API = "/api/v1"


EXTRA_PROCESSES = 400  # a process breakdown over this many takes several ms a tick on any machine


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Without them a quiet machine of ~120 processes reads them in about the budget, and whether
    # a default instrumentation went over it was luck.
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(EXTRA_PROCESSES)]
    try:
        srv = Server(tmp_path_factory.mktemp("budget"), free_port(), ["--tick-budget", "1ms"]).start()
        yield srv
        srv.stop()
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


def paused(server: Server) -> dict | None:
    for inst in httpx.get(server.url + f"{API}/instrumentations", timeout=10).json()["instrumentations"]:
        if any("paused" in text for text in inst["warnings"].values()):
            return inst
    return None


def test_a_paused_instrumentation_says_so_in_the_api_cli_and_dashboard(tight: Server, page: Page) -> None:
    inst = wait_for(lambda: paused(tight), 60)
    host, text = next(iter(inst["warnings"].items()))
    assert "budget" in text and "paused" in text
    one = httpx.get(tight.url + f"{API}/instrumentations/{inst['id']}", timeout=10).json()
    assert host in one["warnings"]
    shown = subprocess.run([str(VENV_BIN / "fleetscope"), "inst", "show", str(inst["id"]),
                            "--url", tight.url], capture_output=True, text=True, timeout=60)
    assert "paused" in shown.stdout and host in shown.stdout
    page.goto(tight.url + "/")
    badge = panel(page, inst["id"]).locator(".warn")
    expect(badge).to_be_visible(timeout=30_000)
    assert "paused" in badge.get_attribute("title") and host in badge.get_attribute("title")
    quiet = [i for i in httpx.get(tight.url + f"{API}/instrumentations").json()["instrumentations"]
             if not i["warnings"]]
    if quiet:  # an instrumentation within its budget shows no badge
        expect(panel(page, quiet[0]["id"]).locator(".warn")).to_be_hidden()
