"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against a
real `fleetscope serve`: what an operator does with the page, end to end."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.conftest import Server
from tests.test_api import default_id, wait_for

API = "/api/v1"
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 720}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Console:
    """Errors the page reported: console.error, uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _message(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


@pytest.fixture
def console(page: Page) -> Console:
    return Console(page)


def panel(page: Page, inst_id: int):
    return page.locator(f'section.panel[data-inst-id="{inst_id}"]').first


def ready(page: Page, inst_id: int, timeout: float = 10_000) -> None:
    expect(panel(page, inst_id)).to_have_attribute("data-state", "ready", timeout=timeout)


def last_time(page: Page, inst_id: int) -> int:
    return int(panel(page, inst_id).get_attribute("data-last") or 0)


def instrumentation(client: httpx.Client, inst_id: int) -> dict | None:
    resp = client.get(f"{API}/instrumentations/{inst_id}")
    return resp.json() if resp.status_code == 200 else None


def in_page(page: Page, inst_id: int, expression: str):
    """Evaluate ``expression`` on the page's Panel object ``p`` of instrumentation ``inst_id``."""
    return page.evaluate(f"(id) => {{ const p = window.fleetscope.panels.find((x) => x.inst && "
                         f"x.inst.id === id); return {expression}; }}", inst_id)


def hottest_cell(page: Page, inst_id: int, layer: str | None = None, before: float = 1.0) -> dict:
    """Page coordinates of the heatmap cell with the largest count (of one selected key's
    ``layer`` if given, among the first ``before`` share of the columns), and that count."""
    return page.evaluate(
        """([id, layer, before]) => {
            const p = window.fleetscope.panels.find((x) => x.inst && x.inst.id === id);
            const chart = p.body.chart, m = chart.matrix, a = chart.area();
            let best = {v: -1};
            m.counts.forEach((col, c) => col.forEach((v, r) => {
                if (c >= before * m.times.length) return;
                let total = layer ? m.keys[layer][c][r] : v;
                if (!layer) for (const k of Object.keys(m.keys)) total += m.keys[k][c][r];
                if (total > best.v) best = {v: total, c, r};
            }));
            const box = chart.canvas.getBoundingClientRect();
            return {count: best.v, col: best.c, row: best.r,
                    x: box.left + a.x0 + (best.c + 0.5) / m.times.length * a.w,
                    y: box.top + a.y1 - (best.r + 0.5) / m.nbuckets * a.h};
        }""", [inst_id, layer, before])


# -- loading ----------------------------------------------------------------------------------------


def test_page_loads_clean_and_draws_live_data(server: Server, page: Page, console: Console,
                                              client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    heat = default_id(client, "proc.cpu", ["utilization"])
    started = time.monotonic()
    page.goto(server.url + "/")
    ready(page, cpu, timeout=3_000)
    assert time.monotonic() - started < 3.0, "a default panel shows data within 3 s"
    ready(page, heat)
    insts = client.get(f"{API}/instrumentations").json()["instrumentations"]
    expect(page.locator("section.panel")).to_have_count(len(insts))
    # Live: the newest point moves on every second, pushed by the event stream (no polling).
    first = last_time(page, cpu)
    wait_for(lambda: last_time(page, cpu) >= first + 2, timeout=6)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    legend = panel(page, cpu).locator(".legend-row")
    expect(legend.first).to_be_visible()
    assert "s/s" in panel(page, cpu).locator(".current").inner_text()
    assert console.errors == [], console.errors


def test_range_without_data_says_so(server: Server, page: Page, client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    heat = default_id(client, "proc.cpu", ["utilization"])
    page.goto(server.url + "/?from=1000000000&to=1000003600")
    for inst_id in (cpu, heat):
        expect(panel(page, inst_id)).to_have_attribute("data-state", "empty")
        expect(panel(page, inst_id).locator(".empty")).to_have_text("No data in this range")
    expect(page.locator("#live-btn")).to_have_text("Live")
    # Back to live: data again, and the address no longer pins a range.
    page.click("#live-btn")
    ready(page, cpu)
    assert "from=" not in page.url


# -- instrumentations -------------------------------------------------------------------------------


def test_create_and_delete_an_instrumentation(server: Server, page: Page, client: httpx.Client) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("section.panel")
    before = {i["id"] for i in client.get(f"{API}/instrumentations").json()["instrumentations"]}
    page.click("#new-inst")
    page.select_option("#f-metric", "net.packets")
    page.select_option("#f-discrete", "direction")
    page.fill("#f-predicate", 'nic != "nothing"')
    expect(page.locator("#f-predicate-error")).to_have_text('✓ nic != "nothing"')
    page.fill("#f-retention", "15m")
    page.click("#f-submit")
    expect(page.locator("#drawer")).not_to_have_class("drawer open")
    created = wait_for(lambda: [i for i in client.get(f"{API}/instrumentations").json()["instrumentations"]
                                if i["id"] not in before])
    assert len(created) == 1
    inst = created[0]
    assert (inst["metric"], inst["decomposition"], inst["retention"]) == ("net.packets", ["direction"], 900)
    assert inst["predicate"] == {"ne": ["nic", "nothing"]}
    ready(page, inst["id"])
    expect(panel(page, inst["id"]).locator(".panel-title")).to_have_text("Network packets by direction")

    # Change its retention from the page.
    panel(page, inst["id"]).locator('button[aria-label="panel actions"]').click()
    page.click('[data-testid="edit"]')
    page.fill("#f-retention", "20m")
    page.click("#f-submit")
    wait_for(lambda: instrumentation(client, inst["id"])["retention"] == 1200)

    # Delete it from the page.
    panel(page, inst["id"]).locator('button[aria-label="panel actions"]').click()
    page.click('[data-testid="delete"]')
    page.click("#dialog-ok")
    expect(panel(page, inst["id"])).to_have_count(0)
    wait_for(lambda: instrumentation(client, inst["id"]) is None)


def test_bad_filter_shows_the_error_next_to_the_input(server: Server, page: Page,
                                                      client: httpx.Client) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("section.panel")
    before = client.get(f"{API}/instrumentations").json()
    page.click("#new-inst")
    page.select_option("#f-metric", "proc.cpu")
    page.fill("#f-predicate", "colour == 3")
    error = page.locator('.form-row[data-field="predicate"] .field-error')
    expect(error).to_contain_text("predicate: proc.cpu has no field 'colour'")
    expect(page.locator("#f-predicate")).to_have_class("invalid")
    page.fill("#f-predicate", "utilization > ")
    expect(error).to_contain_text("predicate:")
    page.click("#f-submit")  # the API refuses it too, and says so in the same place
    expect(error).to_contain_text("predicate:")
    page.fill("#f-retention", "forever")
    page.fill("#f-predicate", "utilization > 5%")
    expect(page.locator('.form-row[data-field="retention"] .field-error')).to_contain_text("retention:")
    assert client.get(f"{API}/instrumentations").json() == before, "nothing was created"


# -- heatmaps and drill-down ------------------------------------------------------------------------


def test_heatmap_hover_shows_cell_details(server: Server, busy_heatmap: int, page: Page,
                                          client: httpx.Client) -> None:
    inst_id = busy_heatmap
    wait_for(lambda: client.get(f"{API}/instrumentations/{inst_id}/value").json()["value"])
    page.goto(server.url + "/")
    ready(page, inst_id)
    page.click("#live-btn")  # paused: the cells stay where they are under the pointer
    expect(page.locator("#conn")).to_have_attribute("data-state", "paused")
    ready(page, inst_id)
    card = panel(page, inst_id)
    card.scroll_into_view_if_needed()
    cell = hottest_cell(page, inst_id)
    assert cell["count"] > 0
    page.mouse.move(cell["x"], cell["y"])
    tip = card.locator(".tip")
    expect(tip).to_be_visible()
    expect(tip.locator(".tip-time")).to_contain_text(time.strftime("%Y-"))
    expect(tip.locator(".tip-range")).to_contain_text("%")
    expect(tip.locator(".tip-count")).to_contain_text("count")
    # Counts by key come from the API's cell details.
    expect(tip.locator(".tip-sub")).to_contain_text("by execname")
    first_key = tip.locator(".tip-table td.k").first.inner_text()
    assert first_key
    # Click: the details stay, and a key can be selected from them; it gets its own hue.
    page.mouse.click(cell["x"], cell["y"])
    expect(tip).to_have_class("tip show pinned")
    key = tip.locator("button.linklike").first
    name = key.get_attribute("data-key")
    key.click()
    expect(card.locator(f'.legend-row[data-key="{name}"]')).to_be_visible()
    wait_for(lambda: in_page(page, inst_id, "Object.keys(p.body.m.keys)") == [name])
    # Drag vertically: the y range zooms, and a button resets it.
    box = card.locator("canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 80, steps=4)
    page.mouse.up()
    reset = card.locator('[data-testid="reset-zoom"]')
    expect(reset).to_be_visible()
    zoomed = in_page(page, inst_id, "p.options")
    assert 0 <= zoomed["ymin"] < zoomed["ymax"]
    reset.click()
    expect(reset).to_have_count(0)
    # Average and percentile lines on request.
    card.locator('[data-overlay="p99"]').click()
    expect(card.locator('[data-overlay="p99"]')).to_have_attribute("aria-pressed", "true")
    expect(card.locator(".legend-row.static .k", has_text="p99")).to_be_visible()


def test_drill_down_creates_the_filtered_instrumentation(server: Server, page: Page,
                                                         client: httpx.Client) -> None:
    by_name = default_id(client, "proc.cpu", ["execname"])
    heat = default_id(client, "proc.cpu", ["utilization"])
    page.goto(server.url + "/")
    ready(page, by_name)
    source = panel(page, by_name)
    key = source.locator(".legend-row").first.get_attribute("data-key")
    key_row = source.locator(f'.legend-row[data-key="{key}"]')
    key_row.click()
    expect(key_row).to_have_class("legend-row hl")
    # Double-click: only that key is drawn, until the chip is clicked.
    key_row.dblclick()
    chip = source.locator(".tools .chip")
    expect(chip).to_contain_text(f"only {key}")
    assert in_page(page, by_name, "p.body.chart.visible().shown.map((s) => s.key)") == [key]
    chip.click()
    expect(chip).to_have_count(0)
    expect(key_row).to_have_class("legend-row hl")  # still selected for the drill-down
    source.locator("button.drill").click()
    page.locator(".menu-heading", has_text=f'execname == "{key}"').wait_for()
    before = {i["id"] for i in client.get(f"{API}/instrumentations").json()["instrumentations"]}
    page.click('[data-testid="drill-pid"]')
    new = wait_for(lambda: [i for i in client.get(f"{API}/instrumentations").json()["instrumentations"]
                            if i["id"] not in before])[0]
    try:
        assert new["metric"] == "proc.cpu"
        assert new["predicate"] == {"eq": ["execname", key]}
        assert new["decomposition"] == ["pid"]
        ready(page, new["id"])
        # Opened beside its source.
        order = page.eval_on_selector_all("section.panel", "els => els.map((e) => Number(e.dataset.instId))")
        assert order[order.index(by_name) + 1] == new["id"]
    finally:
        client.delete(f"{API}/instrumentations/{new['id']}")

    # From a heatmap: zoom to a y range, then break it down by process name.
    ready(page, heat)
    card = panel(page, heat)
    card.scroll_into_view_if_needed()
    box = card.locator("canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] - 60)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 30, steps=4)
    page.mouse.up()
    expect(card.locator('[data-testid="reset-zoom"]')).to_be_visible()
    opts = in_page(page, heat, "p.options")
    card.locator("button.drill").click()
    before = {i["id"] for i in client.get(f"{API}/instrumentations").json()["instrumentations"]}
    page.click('[data-testid="drill-execname"]')
    new = wait_for(lambda: [i for i in client.get(f"{API}/instrumentations").json()["instrumentations"]
                            if i["id"] not in before])[0]
    try:
        assert new["decomposition"] == ["execname", "utilization"]
        assert new["predicate"] == {"and": [{"ge": ["utilization", opts["ymin"]]},
                                            {"lt": ["utilization", opts["ymax"]]}]}
        expect(panel(page, new["id"])).to_be_visible()
    finally:
        client.delete(f"{API}/instrumentations/{new['id']}")
        in_page(page, heat, "p.body.resetZoom()")


# -- dashboards -------------------------------------------------------------------------------------


def test_dashboard_is_saved_and_reloaded_from_its_url(server: Server, browser: Browser, page: Page,
                                                      client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    page.goto(server.url + "/")
    ready(page, cpu)
    name = f"ops {time.time_ns()}"
    page.click("#save-as")
    page.fill("#dialog-input", name)
    page.click("#dialog-ok")
    page.wait_for_url("**/?dashboard=*")
    board_id = int(page.url.split("dashboard=")[1].split("&")[0])
    board = client.get(f"{API}/dashboards/{board_id}").json()
    assert board["name"] == name
    shown = page.eval_on_selector_all("section.panel", "els => els.map((e) => Number(e.dataset.instId))")
    assert [p["instrumentation"] for p in board["panels"]] == shown
    expect(page.locator("#board")).to_have_value(str(board_id))

    # Changes to a saved dashboard are saved: a chart style, and one panel fewer.
    panel(page, cpu).locator(".seg", has_text="Lines").click()
    last = shown[-1]
    panel(page, last).locator('button[aria-label="panel actions"]').click()
    page.click('[data-testid="remove"]')
    wait_for(lambda: len(client.get(f"{API}/dashboards/{board_id}").json()["panels"]) == len(shown) - 1)
    saved = client.get(f"{API}/dashboards/{board_id}").json()
    assert saved["panels"][shown.index(cpu)]["options"] == {"chart": "lines"}

    # Shared by its URL: another browser opens the same panels with the same options, and the range.
    other = browser.new_context(viewport=VIEWPORT, color_scheme="dark")
    try:
        pg = other.new_page()
        pg.goto(f"{server.url}/?dashboard={board_id}&range=3600")
        expect(pg.locator("section.panel")).to_have_count(len(shown) - 1)
        assert pg.eval_on_selector_all("section.panel", "els => els.map((e) => Number(e.dataset.instId))") \
            == shown[:-1]
        expect(panel(pg, cpu).locator(".seg", has_text="Lines")).to_have_attribute("aria-pressed", "true")
        expect(pg.locator('#presets [data-span="3600"]')).to_have_attribute("aria-pressed", "true")
        ready(pg, cpu)
        expect(pg.locator("#board")).to_have_value(str(board_id))
    finally:
        other.close()
    client.delete(f"{API}/dashboards/{board_id}")


# -- connection -------------------------------------------------------------------------------------


def test_page_recovers_after_the_server_restarts(fresh_server: Server, page: Page) -> None:
    page.goto(fresh_server.url + "/")
    ready(page, 1)
    banner = page.locator("#banner")
    expect(banner).to_be_hidden()
    fresh_server.stop()
    expect(banner).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "down")
    fresh_server.start()
    expect(banner).to_be_hidden(timeout=15_000)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # Live again, without a reload: points after the restart arrive through the new stream.
    restarted = int(time.time())
    wait_for(lambda: last_time(page, 1) >= restarted, timeout=10)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


# -- the screenshot in the README -------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def busy_heatmap(server: Server) -> Iterator[int]:
    """A heatmap of process CPU utilization by process name, with three processes busy for
    different shares of the time, running from the first test of this file on: by the time the
    screenshot is taken it has a minute of interesting data."""
    procs = []
    with tempfile.TemporaryDirectory() as tmp, server.client() as client:
        for name, duty in (("web-api", 0.1), ("db-writer", 0.25), ("indexer", 0.4)):
            exe = Path(tmp) / name
            exe.symlink_to(Path(sys.executable).resolve())
            code = ("import time\nwhile True:\n t = time.monotonic()\n"
                    f" while time.monotonic() - t < {0.05 * duty}: pass\n time.sleep({0.05 * (1 - duty)})\n")
            procs.append(subprocess.Popen([str(exe), "-c", code]))
        inst = client.post(f"{API}/instrumentations", json={
            "metric": "proc.cpu", "decomposition": ["execname", "utilization"], "retention": 600,
            "predicate": 'not execname ~ "^(chromium|chrome)"'}).json()
        try:
            yield inst["id"]
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
            client.delete(f"{API}/instrumentations/{inst['id']}")


def test_dashboard_screenshot(server: Server, busy_heatmap: int, page: Page, client: httpx.Client) -> None:
    board = client.post(f"{API}/dashboards", json={"name": "Web tier", "panels": [
        {"instrumentation": default_id(client, "cpu.usage", ["mode"])},
        {"instrumentation": default_id(client, "proc.cpu", ["execname"])},
        {"instrumentation": busy_heatmap, "options": {
            "width": 2, "overlays": ["avg", "p99"], "selected": ["web-api", "db-writer", "indexer"],
            "ymin": 0, "ymax": 60}}]})
    board = board.json()
    try:
        # A full minute of data for the heatmap (the other tests of this file took most of it).
        wait_for(lambda: len([p for p in client.get(f"{API}/instrumentations/{busy_heatmap}/value",
                                                    params={"ndatapoints": 60}).json() if p["value"]]) >= 58,
                 timeout=70)
        page.set_viewport_size({"width": 1280, "height": 760})
        page.goto(f"{server.url}/?dashboard={board['id']}&range=60")
        ready(page, busy_heatmap)
        card = panel(page, busy_heatmap)
        for key in ("web-api", "db-writer", "indexer"):
            expect(card.locator(f'.legend-row[data-key="{key}"]')).to_be_visible()
        layers = in_page(page, busy_heatmap, "Object.keys(p.body.m.keys)")
        assert sorted(layers) == ["db-writer", "indexer", "web-api"]
        # Live data moves under the pointer every second: point again until a cell's details show.
        def details_shown() -> bool:
            cell = hottest_cell(page, busy_heatmap, layer="indexer", before=0.4)
            assert cell["count"] > 0, "the busiest process is drawn in its own hue"
            page.mouse.move(cell["x"], cell["y"])
            try:
                expect(card.locator(".tip .tip-sub")).to_contain_text("by execname", timeout=900)
            except AssertionError:
                return False
            return True

        wait_for(details_shown, timeout=10, interval=0)
        out = ROOT / "docs" / "screenshot.png"
        out.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(out))
        assert out.stat().st_size > 20_000
    finally:
        client.delete(f"{API}/dashboards/{board['id']}")
