"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against a
real `fleetscope serve`: what an operator does with the page, end to end."""

from __future__ import annotations

import base64
import colorsys
import io
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, expect, sync_playwright

import fleetscope
from tests.conftest import Server, wait_for
from tests.test_api import default_id

API = "/api/v1"
WEB_DIR = Path(fleetscope.__file__).resolve().parent / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 720}
# Generous deadlines: every wait in this file polls for a condition, so a long one costs time
# only when something is wrong, and a busy machine (every core loaded) still passes.
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Console:
    """Errors the page reported (console.error, uncaught exceptions, failed requests), and the
    paths of what it loaded."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.loaded: set[str] = set()
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _message(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    def _failed(self, request: Request) -> None:
        if request.failure != "net::ERR_ABORTED":  # the page cancels a load it no longer needs
            self.errors.append(f"request failed: {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.errors.append(f"{response.status} {response.url}")
        else:
            self.loaded.add(urlsplit(response.url).path)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    yield pg
    context.close()


@pytest.fixture
def console(page: Page) -> Console:
    return Console(page)


def panel(page: Page, inst_id: int):
    return page.locator(f'section.panel[data-inst-id="{inst_id}"]').first


def ready(page: Page, inst_id: int, timeout: float = TIMEOUT_MS) -> None:
    """The panel shows data, of the range the page asks for now: no reload is on its way (the page
    marks one with data-loading), so what is under the pointer stays there unless live data moves it."""
    expect(page.locator(f'section.panel[data-inst-id="{inst_id}"][data-state="ready"]:not([data-loading])')
           .first).to_be_attached(timeout=timeout)


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
    ``layer`` if given, among the first ``before`` share of the columns), and that count.

    The coordinates are whole pixels that the page maps to that cell: chromium hands the page
    whole-pixel pointer positions (it drops the fraction), and a cell is often barely more than
    a pixel wide (300 columns of a narrow panel), so its fractional middle could point at its
    neighbour."""
    return page.evaluate(
        """([id, layer, before]) => {
            const p = window.fleetscope.panels.find((x) => x.inst && x.inst.id === id);
            const chart = p.body.chart, m = chart.matrix, a = chart.area();
            const box = chart.canvas.getBoundingClientRect();
            const pointAt = (c, r) => {  // whole page pixels inside cell (c, r), or null
                const x = box.left + a.x0 + (c + 0.5) / m.times.length * a.w;
                const y = box.top + a.y1 - (r + 0.5) / m.nbuckets * a.h;
                for (const dx of [0, 1, -1]) for (const dy of [0, 1, -1]) {
                    const px = Math.floor(x) + dx, py = Math.floor(y) + dy;
                    const cell = chart.cellAt(px - box.left, py - box.top);
                    if (cell && cell.col === c && cell.row === r) return {x: px, y: py};
                }
                return null;
            };
            let best = {v: -1};
            m.counts.forEach((col, c) => col.forEach((v, r) => {
                if (c >= before * m.times.length) return;
                let total = layer ? m.keys[layer][c][r] : v;
                if (!layer) for (const k of Object.keys(m.keys)) total += m.keys[k][c][r];
                if (total > best.v && pointAt(c, r)) best = {v: total, c, r};
            }));
            return {count: best.v, col: best.c, row: best.r, ...pointAt(best.c, best.r)};
        }""", [inst_id, layer, before])


# -- loading ----------------------------------------------------------------------------------------


def test_page_loads_clean_and_draws_live_data(server: Server, page: Page, console: Console,
                                              client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    heat = default_id(client, "proc.cpu", ["utilization"])
    page.goto(server.url + "/")
    ready(page, cpu)
    # How soon the first chart is drawn is a figure of bench/dashboard.py, not a test (a busy
    # machine would make it fail by luck); here: the page recorded it.
    assert page.evaluate("window.fleetscope.firstChart") > 0
    ready(page, heat)
    # Every module and style sheet of the package was served (none missing or misnamed after a move).
    shipped = {"/web/" + f.relative_to(WEB_DIR).as_posix() for f in WEB_DIR.rglob("*")
               if f.suffix in (".js", ".css")}
    assert shipped and shipped <= console.loaded, sorted(shipped - console.loaded)
    insts = client.get(f"{API}/instrumentations").json()["instrumentations"]
    expect(page.locator("section.panel")).to_have_count(len(insts))
    # Live: the newest point moves on every second, pushed by the event stream (no polling).
    first = last_time(page, cpu)
    wait_for(lambda: last_time(page, cpu) >= first + 2, timeout=30)
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
    # The click shows "paused" and starts the reload of the paused range in one go: from here
    # ready() waits for that reload, which would otherwise land later and move (or unpin) the
    # cell under the pointer.
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
    expect(banner).to_be_hidden(timeout=2 * TIMEOUT_MS)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # Live again, without a reload: points after the restart arrive through the new stream.
    restarted = int(time.time())
    wait_for(lambda: last_time(page, 1) >= restarted, timeout=30)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


# -- the screenshot in the README -------------------------------------------------------------------
#
# The README's docs/screenshot.png is the dashboard below, live, with the details of the busiest
# process's cell showing. The test draws it over a fixed minute and checks its pixels against the
# API (it writes only into its temporary directory); to refresh the README's file, deliberately:
#     .venv/bin/python scripts/screenshot.py docs/screenshot.png

BUSY = (("web-api", 0.1), ("db-writer", 0.25), ("indexer", 0.4))  # process name, share of one core
SELECTED = [name for name, _ in BUSY]  # drawn in their own hues, in this order
SCREENSHOT_VIEWPORT = {"width": 1280, "height": 760}
MITER_REACH = 10 * 1.6 / 2 + 1  # px: how far a line over the heatmap can reach past its points


@contextmanager
def busy_processes_heatmap(client: httpx.Client) -> Iterator[int]:
    """Three processes busy for different shares of one core (``BUSY``), and a heatmap of process
    CPU utilization by process name that holds them; yields the heatmap's id."""
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name, duty in BUSY:
                exe = Path(tmp) / name
                exe.symlink_to(Path(sys.executable).resolve())
                code = ("import time\nwhile True:\n t = time.monotonic()\n"
                        f" while time.monotonic() - t < {0.05 * duty}: pass\n"
                        f" time.sleep({0.05 * (1 - duty)})\n")
                procs.append(subprocess.Popen([str(exe), "-c", code]))
            inst = client.post(f"{API}/instrumentations", json={
                "metric": "proc.cpu", "decomposition": ["execname", "utilization"], "retention": 600,
                "predicate": 'not execname ~ "^(chromium|chrome)"'}).json()
            try:
                yield inst["id"]
            finally:
                client.delete(f"{API}/instrumentations/{inst['id']}")
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module", autouse=True)
def busy_heatmap(server: Server) -> Iterator[int]:
    """The busy processes' heatmap, running from the first test of this file on: by the time the
    screenshot is taken it has data."""
    with server.client() as client, busy_processes_heatmap(client) as inst_id:
        yield inst_id


def screenshot_board(client: httpx.Client, heat_id: int) -> dict:
    """The README's dashboard: CPU time by mode, process CPU by name, and the busy heatmap (wide,
    the busy processes in their own hues, average and p99 lines over it)."""
    resp = client.post(f"{API}/dashboards", json={"name": "Web tier", "panels": [
        {"instrumentation": default_id(client, "cpu.usage", ["mode"])},
        {"instrumentation": default_id(client, "proc.cpu", ["execname"])},
        {"instrumentation": heat_id, "options": {
            "width": 2, "overlays": ["avg", "p99"], "selected": SELECTED, "ymin": 0, "ymax": 60}}]})
    assert resp.status_code == 201, resp.text
    return resp.json()


def point_at_details(page: Page, heat_id: int, before: float = 0.4) -> dict:
    """Point at the busiest process's hottest cell (among the first ``before`` share of the
    columns, so that its details open to its right) until the cell's details show; live data
    moves the cells under the pointer every second, so point again until they do. The cell."""
    card = panel(page, heat_id)

    def details_shown() -> dict | None:
        cell = hottest_cell(page, heat_id, layer="indexer", before=before)
        assert cell["count"] > 0, "the busiest process is drawn in its own hue"
        page.mouse.move(cell["x"], cell["y"])
        try:  # a second: the data moves on after that (when live)
            expect(card.locator(".tip .tip-sub")).to_contain_text("by execname", timeout=1_000)
        except AssertionError:
            return None
        return cell

    return wait_for(details_shown, timeout=TIMEOUT_MS / 1000, interval=0)


def canvas_image(page: Page, inst_id: int) -> tuple[Image.Image, dict]:
    """The pixels of a panel's canvas as drawn (device pixels), and its geometry: the plot area
    ``a`` in CSS pixels, ``dpr``, and the canvas's place on the page (``left``, ``top``)."""
    got = in_page(page, inst_id, """(() => {
        const chart = p.body.chart, box = chart.canvas.getBoundingClientRect();
        return {url: chart.canvas.toDataURL("image/png"), a: chart.area(), dpr: chart.dpr,
                left: box.left, top: box.top};
    })()""")
    data = base64.b64decode(got.pop("url").split(",", 1)[1])
    return Image.open(io.BytesIO(data)).convert("RGBA"), got


def hsv_of(rgb: tuple[int, ...]) -> tuple[float, float, float]:
    """Hue in degrees, saturation and value of an 8-bit colour."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb[:3]))
    return h * 360, s, v


def hue_apart(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def latest_slot(client: httpx.Client, inst_id: int) -> int:
    """The start of the newest slot of an instrumentation that its sources reported."""
    points = client.get(f"{API}/instrumentations/{inst_id}/value", params={"ndatapoints": 10}).json()
    return max(p["start_time"] for p in points if p["nsources"] and p["nsources"] == p["expected"])


def check_heatmap_pixels(page: Page, client: httpx.Client, inst_id: int, start: int, end: int) -> dict:
    """Compare every heatmap cell the page drew with the API's matrix for the same minute, asked
    for here: cells with no count are not drawn (transparent, or a grey grid line), every cell with
    a count is, in the hue of its largest layer: a busy process's own (21 degrees, then 91 further
    each, as DESIGN.md has it) or the faint base hue of the rest; within one process the
    saturation grows with the count. Cells under the average/p99 lines are left out.
    Returns how many cells of each kind were checked."""
    m = client.get(f"{API}/instrumentations/{inst_id}/heatmap", params={
        "start_time": start, "end_time": end, "ndatapoints": end - start, "nbuckets": 100,
        "selected": ",".join(SELECTED), "ymin": 0, "ymax": 60}).json()
    ncols, nrows = len(m["times"]), m["nbuckets"]
    assert m["times"][0] == start and ncols == end - start, m["times"]
    assert in_page(page, inst_id, "p.body.m.times") == m["times"], "the page shows the same minute"
    img, g = canvas_image(page, inst_id)
    a, dpr = g["a"], g["dpr"]
    overlays = in_page(page, inst_id, "p.body.overlays")
    assert sorted(overlays) == ["avg", "p99"]

    def y_of(v: float) -> float:
        return a["y1"] - (v - m["ymin"]) / (m["ymax"] - m["ymin"]) * a["h"]

    def under_a_line(c: int, y: float) -> bool:
        """Whether a line over the map passes near height y in column c: it runs between the
        columns' middles (so from half-way to the neighbours' values), 1.6 px wide, and the
        canvas's mitred joins (miter limit 10) reach up to 8 px past a sharp turn."""
        for values in overlays.values():
            if values[c] is None:
                continue
            ys = [y_of(values[c])]
            ys += [(ys[0] + y_of(values[j])) / 2 for j in (c - 1, c + 1)
                   if 0 <= j < ncols and values[j] is not None]
            if min(ys) - MITER_REACH <= y <= max(ys) + MITER_REACH:
                return True
        return False

    key_hue = {k: (21 + 91 * i) % 360 for i, k in enumerate(SELECTED)}
    checked = {"empty": 0, "rest": 0, **{k: 0 for k in SELECTED},
               "with data": [k for k in SELECTED if any(v > 0 for col in m["keys"][k] for v in col)]}
    by_count: dict[str, list[tuple[float, float]]] = {k: [] for k in SELECTED}
    wrong = []
    cw, ch = a["w"] / ncols, a["h"] / nrows
    for c in range(ncols):
        for r in range(nrows):
            x, y = a["x0"] + (c + 0.5) * cw, a["y1"] - (r + 0.5) * ch
            if under_a_line(c, y):
                continue
            px = img.getpixel((int(x * dpr), int(y * dpr)))
            hue, sat, _ = hsv_of(px)
            layers = {k: m["keys"][k][c][r] for k in SELECTED if m["keys"][k][c][r] > 0}
            if m["counts"][c][r] > 0:
                layers["rest"] = m["counts"][c][r]
            where = f"column {c}, row {r} ({layers}): {px}"
            if not layers:
                checked["empty"] += 1
                if px[3] and sat >= 0.05:
                    wrong.append(f"drawn but empty: {where}")
                continue
            if px[3] != 255 or sat < 0.06:
                wrong.append(f"not drawn: {where}")
                continue
            # Shown: the layer of the largest count (normalised jointly, so the order holds;
            # a key wins a tie with the rest); near-ties are left out.
            ranked = sorted(layers.items(), key=lambda kv: -kv[1])
            layer, count = ranked[0]
            if len(ranked) > 1 and ranked[1][1] > 0.99 * count:
                continue
            checked[layer] += 1
            if layer == "rest":
                if hue_apart(hue, 220) > 15 or sat > 0.2:
                    wrong.append(f"not the faint base hue: {where}")
            elif hue_apart(hue, key_hue[layer]) > 10:
                wrong.append(f"not the hue of {layer} ({key_hue[layer]}): {where} has {hue:.0f}")
            else:
                by_count[layer].append((count, sat))
    for layer, cells in by_count.items():
        cells.sort()
        for (c0, s0), (c1, s1) in itertools.pairwise(cells):
            if s1 < s0 - 0.02:
                wrong.append(f"{layer}: a count of {c1} is paler ({s1:.2f}) than one of {c0} ({s0:.2f})")
    assert not wrong, f"{len(wrong)} cells: " + "; ".join(wrong[:8])
    return checked


def check_stacked_lines(page: Page, client: httpx.Client, inst_id: int, start: int, end: int,
                        shot: Image.Image) -> str:
    """In the screenshot, the stacked chart of CPU time by mode fills the bottom of the stack, at
    the point where the API says the top key (by total over the minute) is largest, in the hue of
    that key's legend swatch. Returns the key."""
    points = client.get(f"{API}/instrumentations/{inst_id}/value",
                        params={"start_time": start, "end_time": end, "duration": 1}).json()
    totals: dict[str, float] = {}
    for p in points:
        for k, v in (p["value"] or {}).items():
            totals[k] = totals.get(k, 0) + v / p["duration"]
    assert in_page(page, inst_id, "p.body.pts.map((x) => x.value)") == [p["value"] for p in points], \
        "the page shows the same data"
    top = min((k for k in totals if k != "(other)"), key=lambda k: (-totals[k], k))
    i = max(range(len(points)), key=lambda j: (points[j]["value"] or {}).get(top, 0))
    assert points[i]["value"][top] > 0
    _, g = canvas_image(page, inst_id)
    a = g["a"]
    span = len(points) * points[0]["duration"]
    assert in_page(page, inst_id, "[p.body.chart.data.start, p.body.chart.data.end]") == \
        [points[0]["start_time"], points[0]["start_time"] + span], "the page shows the same minute"
    x = g["left"] + a["x0"] + (points[i]["start_time"] + 0.5 - points[0]["start_time"]) / span * a["w"]
    y = g["top"] + a["y1"] - 4  # just above the axis: inside the bottom key's area
    px = shot.getpixel((round(x), round(y)))
    swatch = panel(page, inst_id).locator(f'.legend-row[data-key="{top}"] .swatch').evaluate(
        "(el) => getComputedStyle(el).backgroundColor")
    want = tuple(int(v) for v in swatch[swatch.index("(") + 1:-1].split(","))
    hue, sat, _ = hsv_of(px)
    # The area is the swatch's colour, partly transparent over the white panel: the same hue.
    assert sat > 0.1 and hue_apart(hue, hsv_of(want)[0]) < 10, (top, px, want)
    return top


def test_dashboard_screenshot(server: Server, busy_heatmap: int, page: Page, client: httpx.Client,
                              tmp_path: Path) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    board = screenshot_board(client, busy_heatmap)
    try:
        # Some data for the heatmap (its processes run from the first test of this file on).
        wait_for(lambda: sum(1 for p in client.get(f"{API}/instrumentations/{busy_heatmap}/value",
                                                   params={"ndatapoints": 60}).json() if p["value"]) >= 20,
                 timeout=60)
        # A fixed minute that ends with the newest slot both panels have been sent: every slot in it
        # is final (the one source reported), so the page and this test see the same data.
        end = min(latest_slot(client, inst) for inst in (cpu, busy_heatmap)) + 1
        start = end - 60
        page.set_viewport_size(SCREENSHOT_VIEWPORT)
        page.goto(f"{server.url}/?dashboard={board['id']}&from={start}&to={end}")
        ready(page, busy_heatmap)
        ready(page, cpu)
        card = panel(page, busy_heatmap)
        for key in SELECTED:
            expect(card.locator(f'.legend-row[data-key="{key}"]')).to_be_visible()
        assert sorted(in_page(page, busy_heatmap, "Object.keys(p.body.m.keys)")) == sorted(SELECTED)

        checked = check_heatmap_pixels(page, client, busy_heatmap, start, end)
        assert checked["empty"] > 100 and checked["rest"] > 0, checked
        # Each busy process with data has cells of its hue (on a machine of many processes the
        # slot's top keys can leave the least busy one in "(other)").
        assert checked["indexer"] > 0 and all(checked[k] > 0 for k in checked["with data"]), checked
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot))
        with Image.open(shot) as img:
            assert img.size == (SCREENSHOT_VIEWPORT["width"], SCREENSHOT_VIEWPORT["height"])
            check_stacked_lines(page, client, cpu, start, end, img.convert("RGB"))

        # What the README shows: the details of the busiest process's cell.
        point_at_details(page, busy_heatmap, before=1.0)
        expect(card.locator(".tip .tip-table td.k", has_text="indexer").first).to_be_visible()
        page.screenshot(path=str(tmp_path / "screenshot.png"))
    finally:
        client.delete(f"{API}/dashboards/{board['id']}")
