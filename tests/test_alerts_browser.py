"""Alerts on the dashboard, in a real browser (Debian's chromium, headless, driven by Playwright)
against a real `fleetscope serve` with tokens: "Alert when…" in a panel's menu makes a rule (and
shows the API's refusal by the field it names), the rule's threshold is drawn on the panel (red
while it fires), an alert that fires is counted on the toolbar and listed with a link to the
dashboard around its time; a viewer is not offered the form."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Server, free_port, wait_for
from tests.test_browser import browser as browser  # the module-scoped chromium fixture
from tests.test_browser import canvas_image, in_page, panel, ready
from tests.test_browser import page as page

API = "/api/v1"
RECEIVER = "ops-hook"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("alerts-browser"), free_port(), auth=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, timeout=10,
                      headers={"authorization": f"Bearer {server.token('alerts-browser-admin')}"}) as client:
        yield client


@pytest.fixture(scope="module")
def cpu(admin: httpx.Client) -> int:
    """A receiver (a webhook nobody answers: deliveries fail and are retried, which holds up
    nothing) and an instrumentation of the total CPU time, made through the API."""
    made = admin.post("/alerts/receivers", json={"name": RECEIVER, "kind": "webhook",
                                                 "settings": {"url": "http://127.0.0.1:9/hook"}})
    assert made.status_code == 201, made.text
    inst = admin.post("/instrumentations", json={"metric": "cpu.usage", "retention": 600})
    assert inst.status_code == 201, inst.text
    return inst.json()["id"]


def log_in(page: Page, server: Server, token: str) -> list[str]:
    """Log the page in with a pasted token; the uncaught errors the page reports from then on."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    page.fill("#login-token", token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("section.panel")
    return errors


def open_alert_form(page: Page, inst_id: int) -> None:
    panel(page, inst_id).locator('button[aria-label="panel actions"]').click()
    page.click('[data-testid="alert"]')
    expect(page.locator("#alert-dialog")).to_be_visible()


def rules_of(admin: httpx.Client, inst_id: int) -> list[dict]:
    return admin.get("/alerts/rules", params={"instrumentation": inst_id}).json()["rules"]


def drawn(page: Page, inst_id: int) -> list[dict]:
    """The thresholds the panel's chart drew last: [{id, value, label, state, y}]."""
    return in_page(page, inst_id, "p.body.chart.thresholdsDrawn")


def threshold_pixels(page: Page, inst_id: int, rule_id: int) -> list[tuple[int, ...]]:
    """The pixels of the row of the panel's canvas where rule ``rule_id``'s threshold is drawn,
    across the plot (left of the label, which sits at the right end)."""
    lines = {t["id"]: t for t in drawn(page, inst_id)}
    assert lines[rule_id]["y"] is not None, lines
    img, g = canvas_image(page, inst_id)
    a, dpr = g["a"], g["dpr"]
    row = int(lines[rule_id]["y"] * dpr)
    return [img.getpixel((int(x * dpr), row)) for x in range(int(a["x0"]) + 2, int(a["x0"] + a["w"] * 0.6))]


def share(pixels: list[tuple[int, ...]], test) -> float:
    return sum(1 for px in pixels if px[3] and test(px)) / len(pixels)


def grey(px: tuple[int, ...]) -> bool:
    """The muted text colour of a threshold that does not fire (#667085 on the light theme)."""
    return max(px[:3]) < 170 and max(px[:3]) - min(px[:3]) < 60


def red(px: tuple[int, ...]) -> bool:
    """The danger colour of a firing threshold (#c8322f on the light theme)."""
    return px[0] > 150 and px[1] < 110 and px[2] < 110


def test_alert_when_draws_the_threshold_and_lists_what_fires(server: Server, admin: httpx.Client, cpu: int,
                                                             page: Page) -> None:
    errors = log_in(page, server, server.token("alerts-browser-operator", role="operator"))
    ready(page, cpu)
    points = admin.get(f"/instrumentations/{cpu}/value", params={"ndatapoints": 10}).json()
    assert all(p["duration"] == 1 for p in points)  # one-second slots: a slot's value is per second

    # The form starts from the panel's values: `value > X`, X a round number a bit above the largest shown.
    open_alert_form(page, cpu)
    suggested = page.locator("#a-when").input_value()
    largest = in_page(page, cpu, "p.body.largestShown()")
    found = re.fullmatch(r"value > ([0-9.]+)", suggested)
    assert found and largest < float(found[1]) <= 1.5 * largest, (suggested, largest)
    expect(page.locator("#a-receivers option")).to_have_text([f"{RECEIVER} (webhook)"])
    page.click("#a-submit")
    expect(page.locator("#alert-dialog")).to_be_hidden()
    above = wait_for(lambda: rules_of(admin, cpu))
    assert [r["when"] for r in above] == [suggested]

    # Its threshold is drawn: a dashed line in the muted colour, above the data.
    expect(panel(page, cpu)).to_have_attribute("data-rules", "1")
    wait_for(lambda: [t["id"] for t in drawn(page, cpu)] == [above[0]["id"]])
    pixels = threshold_pixels(page, cpu, above[0]["id"])
    assert 0.35 < share(pixels, grey) < 0.9, pixels[:20]  # dashed: drawn, with gaps

    # A condition the API refuses: its message shows by the `when` field, and nothing is made.
    open_alert_form(page, cpu)
    page.fill("#a-when", "p99 > 1")
    page.click("#a-submit")
    refused = admin.post("/alerts/rules", json={"instrumentation": cpu, "when": "p99 > 1"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "when", refused.text
    expect(page.locator("#a-when-error")).to_contain_text(refused.json()["error"]["message"])
    expect(page.locator("#a-when")).to_have_class(re.compile(r"\binvalid\b"))
    assert len(rules_of(admin, cpu)) == 1

    # A condition that holds now (half the smallest total seen), typed, firing at once.
    values = [p["value"] for p in admin.get(f"/instrumentations/{cpu}/value",
                                            params={"ndatapoints": 10}).json() if p["value"]]
    threshold = round(min(values) / 2, 3)
    assert threshold > 0, values
    typed = f"value > {threshold}"
    page.fill("#a-when", typed)
    page.fill("#a-for", "0")
    page.select_option("#a-receivers", RECEIVER)
    page.select_option("#a-severity", "critical")
    page.fill("#a-summary", "CPU busy: {value}")
    page.click("#a-submit")
    expect(page.locator("#alert-dialog")).to_be_hidden()
    made = wait_for(lambda: [r for r in rules_of(admin, cpu) if r["when"] == typed])[0]
    assert (made["for"], made["receivers"], made["severity"], made["summary"]) == (0, [RECEIVER], "critical",
                                                                                 "CPU busy: {value}")

    # It fires: counted on the toolbar, and its threshold turns red (the other stays muted).
    wait_for(lambda: [a["rule_id"] for a in admin.get("/alerts").json()["firing"]] == [made["id"]],
             timeout=20)
    expect(page.locator("#alerts-count")).to_have_text("1")
    wait_for(lambda: {t["id"]: t["state"] for t in drawn(page, cpu)}
             == {above[0]["id"]: "ok", made["id"]: "firing"})
    assert 0.35 < share(threshold_pixels(page, cpu, made["id"]), red) < 0.9
    assert share(threshold_pixels(page, cpu, above[0]["id"]), red) == 0

    # The list: the firing alert with its metric and a link to the dashboard around its time.
    page.click("#alerts-btn")
    item = page.locator(f'#alerts-drawer [data-state="firing"] .alert-item[data-rule="{made["id"]}"]')
    expect(item).to_contain_text("cpu.usage")
    expect(item).to_contain_text(typed)
    since = admin.get("/alerts").json()["firing"][0]["since"]
    href = item.locator("a.alert-link").get_attribute("href")
    found = re.search(r"from=(\d+)&to=(\d+)", href)
    assert found and int(found[1]) < since < int(found[2]), (href, since)
    # Followed: the page shows that range (paused), with the panel in view.
    item.locator("a.alert-link").click()
    expect(page.locator("#alerts-drawer")).not_to_have_class(re.compile(r"\bopen\b"))
    expect(page.locator("#live-btn")).to_have_text("Live")
    assert f"from={found[1]}" in page.url and f"to={found[2]}" in page.url
    expect(panel(page, cpu)).to_be_in_viewport()
    # Opened as a page of its own (a new tab, a notification's link): the same range, the panel
    # (the last of the dashboard, below the first screen) scrolled into view.
    page.goto(server.url + href)
    expect(page.locator("#live-btn")).to_have_text("Live")
    expect(panel(page, cpu)).to_be_in_viewport()
    expect(page).not_to_have_url(re.compile(r"inst="))  # followed once, not again on a reload
    assert errors == []


def test_a_viewer_is_not_offered_the_alert_form(server: Server, cpu: int, page: Page) -> None:
    log_in(page, server, server.token("alerts-browser-viewer", role="viewer"))
    ready(page, cpu)
    panel(page, cpu).locator('button[aria-label="panel actions"]').click()
    entry = page.locator('[data-testid="alert"]')
    expect(entry).to_be_disabled()
    expect(entry).to_contain_text("needs operator role")
    assert "viewer" in entry.get_attribute("title")
