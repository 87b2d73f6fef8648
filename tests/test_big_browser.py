"""The dashboard over big ranges and many keys (#19), in a real chromium against a real
`fleetscope serve` whose store holds history written before it started:

- ``proc.cpu`` by execname, per minute for 40 days, 300 keys over the range (10 a minute that
  change every hour, ``java`` always, and ``(other)``): the legend's top-N choice and its search
  over every key, a searched key pinned and kept in the dashboard, the legend's values from the
  last complete bucket;
- a distribution by execname (keys ``a``, ``b``, ``c`` observed at 1.5, 15 and 150 every minute
  for two days): isolate and exclude the selected key, a log value axis, all kept in the
  dashboard across a reload;
- time ticks and range labels over a year (the year shown when the range crosses one).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from fleetscope.api.control import DEFAULTS_KEY
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.metrics import INTERVAL
from fleetscope.model.series import DataPoint
from fleetscope.store.base import HistoryChange
from fleetscope.store.block import Block, compact_columns, from_points, take
from fleetscope.store.chunkio import to_chunks
from fleetscope.store.history import History
from fleetscope.store.open import open_store
from fleetscope.store.rollup import rollup
from tests.conftest import Server, free_port, wait_for
from tests.test_browser import browser as browser
from tests.test_browser import in_page, panel, ready
from tests.test_browser import page as page

API = "/api/v1"
DAY = 86400
G = 60
DAYS = 40
NKEYS = 300
PER_MINUTE = 10
KEYS = sorted([values.OTHER, "java", *(f"p{j:03d}" for j in range(NKEYS))])
COL = {k: j for j, k in enumerate(KEYS)}
# The distribution: per minute, OBS observations of each key at its value.
OBSERVED = {"a": 1.5, "b": 15.0, "c": 150.0}
OBS = 10


def minutes(start: int, n: int) -> Block:
    times = start + np.arange(n, dtype=np.int64) * G
    hour = (times // 3600).astype(np.int64)
    vals = np.full((n, len(KEYS)), np.nan)
    rows = np.arange(n)
    for j in range(PER_MINUTE):
        key = (hour * 7 + j * 31) % NKEYS
        vals[rows, [COL[f"p{k:03d}"] for k in key.tolist()]] = (times // G * (j + 3)) % 97 + 1
    vals[:, COL["java"]] = 360.0  # 6 s/s of CPU, every minute
    vals[:, COL[values.OTHER]] = 5.0
    ones = np.ones(n, np.int64)
    return compact_columns(Block(times, ones, ones, ones, np.zeros(n, bool), tuple(KEYS), vals, None))


def create(store, stat: str, decomposition: tuple[str, ...], shape: str, days: int):
    return store.create_instrumentation({
        "module": "proc", "stat": stat, "predicate": {}, "decomposition": decomposition,
        "granularity": G, "retention": 600, "idle_max": 0, "persist": True, "kind": INTERVAL,
        "shape": shape, "discrete": "execname",
        "numeric": "utilization" if shape == values.DISCRETE_HISTOGRAM else None,
        "history": {"second": (days + 5) * DAY, "hour": 365 * DAY}}, 0.0)


def write_days(store, inst, days: int, end: int, topk: int = 50) -> None:
    """``days`` of minutes ending at ``end`` a day at a time, and their hours (as the compactor
    rolls them up) with the hour tier's watermark; the last hour, still filling, is left to the
    server to roll up."""
    history = History(store)
    hour_tier = history.tiers(inst)[1]
    done = end - end % 3600
    for start in range(end - days * DAY, end, DAY):
        block = minutes(start, min(DAY, end - start) // G)
        history.write_block(inst, block)
        hours = rollup(block, inst.shape, start - start % 3600, 3600, topk)
        whole = take(hours, hours.times < done)
        store.write_history(HistoryChange(add=to_chunks(inst.id, hour_tier, whole),
                                          watermarks=[(inst.id, hour_tier.level, min(done, start + DAY))]))


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, int, int]]:
    data = tmp_path_factory.mktemp("big")
    store = open_store(f"sqlite:///{data / 'fleetscope.db'}")
    store.set_meta(DEFAULTS_KEY, str(time.time()))  # only these two instrumentations
    end = int(time.time()) // G * G - G
    cpu = create(store, "cpu", ("execname",), values.DISCRETE, DAYS)
    write_days(store, cpu, DAYS, end)
    dist = create(store, "cpu", ("execname", "utilization"), values.DISCRETE_HISTOGRAM, 2)
    pts = []
    for t in range(end - 2 * DAY, end, G):
        value = {}
        for key, v in OBSERVED.items():
            h = Histogram()
            for _ in range(OBS):
                h.record(v)
            value[key] = h
        pts.append(DataPoint(t, G, value, 1, 1))
    hist_block = from_points(pts, values.DISCRETE_HISTOGRAM)
    History(store).write_block(dist, hist_block)
    store.close()
    srv = Server(data, free_port()).start()
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        board = client.post(f"{API}/dashboards", json={"name": "big", "panels": [
            {"instrumentation": cpu.id},
            {"instrumentation": dist.id, "options": {"selected": ["c"]}}]}).json()
    yield srv, cpu.id, dist.id, board["id"]
    srv.stop()


def board_options(srv: Server, board_id: int, inst_id: int) -> dict:
    board = httpx.get(f"{srv.url}{API}/dashboards/{board_id}", timeout=10).json()
    return next(p["options"] for p in board["panels"] if p["instrumentation"] == inst_id)


def test_a_thousand_keys_top_n_search_pin_and_the_last_complete_bucket(big, page: Page) -> None:
    srv, cpu, _dist, board = big
    now = int(time.time())
    page.goto(f"{srv.url}/?dashboard={board}&from={now - DAYS * DAY}&to={now}")
    ready(page, cpu)
    card = panel(page, cpu)
    rows = card.locator(".legend-list:not(.legend-found) .legend-row")
    expect(rows).to_have_count(8 + 1)  # the top 8 and "(rest) N keys"
    expect(rows.first).to_have_attribute("data-key", "java")
    # The legend's values come from the last bucket that is over: the last one of the range ends
    # in the future and holds only part of its sum.
    shown = in_page(page, cpu, "(() => { const b = p.body, i = b.shownIndex(); return "
                               "{i, n: b.pts.length, start: b.pts[i].start_time, step: b.pts[i].duration, "
                               "last: b.pts.at(-1).start_time + b.pts.at(-1).duration}; })()")
    assert shown["start"] + shown["step"] <= time.time() < shown["last"]
    java = rows.first.locator(".v").inner_text()
    assert java.startswith("6") and "/s" in java, java  # 360 CPU-seconds a minute: 6 s/s

    # Top 20.
    card.locator("select.top-n").select_option("20")
    expect(rows).to_have_count(20 + 1)
    wait_for(lambda: board_options(srv, board, cpu).get("top") == 20)

    # Search every key of the range, and draw one that is not in the top 20.
    ranked = in_page(page, cpu, "p.body.ranked.map(([k]) => k)")
    assert len(ranked) == NKEYS + 1  # every p### and java; (other) is not a key to pick
    wanted = ranked[-1]
    search = card.locator("input.legend-search")
    expect(search).to_have_attribute("placeholder", f"find among {len(ranked)} keys")
    search.fill(wanted)
    found = card.locator(f'.legend-found .legend-row[data-key="{wanted}"]')
    found.click()
    expect(card.locator(f'.legend-list:not(.legend-found) .legend-row[data-key="{wanted}"]')).to_be_visible()
    wait_for(lambda: board_options(srv, board, cpu).get("pinned") == [wanted])
    page.reload()
    ready(page, cpu)
    expect(card.locator(f'.legend-list:not(.legend-found) .legend-row[data-key="{wanted}"]')).to_be_visible()
    expect(rows).to_have_count(20 + 1 + 1)
    card.locator(f'.legend-row[data-key="{wanted}"] button.unpin').click()
    wait_for(lambda: "pinned" not in board_options(srv, board, cpu))


MATRIX_JS = """(() => {
    const m = p.body.m;
    const sum = (a) => a.flat().reduce((x, y) => x + y, 0);
    const total = (a) => a.reduce((x, y) => x + y, 0);
    return {log: m.log, ymin: m.ymin, ymax: m.ymax, rest: sum(m.counts),
            keys: Object.fromEntries(Object.entries(m.keys).map(([k, v]) => [k, sum(v)])),
            clipped: total(m.clipped_below) + total(m.clipped_above)};
})()"""


def matrix(page: Page, inst_id: int) -> dict:
    """What the panel's heatmap holds: counts of the rest and per selected key, clipped counts
    (whole numbers: spreading a bucket over rows adds fractions that sum back to it)."""
    m = in_page(page, inst_id, MATRIX_JS)
    return {**m, "rest": round(m["rest"]), "clipped": round(m["clipped"]),
            "keys": {k: round(v) for k, v in m["keys"].items()}}


def test_heatmap_isolate_exclude_and_log_axis_are_kept(big, page: Page) -> None:
    srv, _cpu, dist, board = big
    # Ending 5 minutes ago: before the live agent's own processes reach this proc.* heatmap.
    now = int(time.time()) - 300
    page.goto(f"{srv.url}/?dashboard={board}&from={now - 2 * DAY}&to={now}")
    ready(page, dist)
    card = panel(page, dist)
    m = matrix(page, dist)
    # Every minute holds a, b and c, OBS each, so the rest (a and b) is twice c. (A column at
    # the range's edge may hold part of a minute: counts are compared with c's, not with 30 a minute.)
    c_shown = m["keys"]["c"]
    assert c_shown > 0 and abs(m["rest"] - 2 * c_shown) <= 1, m

    card.locator('button[data-keys="isolate"]').click()
    wait_for(lambda: matrix(page, dist)["rest"] == 0)
    m = matrix(page, dist)
    assert m["keys"] == {"c": c_shown}
    wait_for(lambda: board_options(srv, board, dist).get("keys") == "isolate")

    card.locator('button[data-keys="exclude"]').click()
    wait_for(lambda: matrix(page, dist)["keys"] == {})
    m = matrix(page, dist)
    assert abs(m["rest"] + m["clipped"] - 2 * c_shown) <= 1  # a and b, not c

    card.locator('button[data-scale="log"]').click()
    wait_for(lambda: matrix(page, dist)["log"] is True)
    wait_for(lambda: board_options(srv, board, dist).get("scale") == "log")
    page.reload()
    ready(page, dist)
    expect(card.locator('button[data-scale="log"]')).to_have_attribute("aria-pressed", "true")
    expect(card.locator('button[data-keys="exclude"]')).to_have_attribute("aria-pressed", "true")
    m = matrix(page, dist)
    assert m["log"] and 0 < m["ymin"] < OBSERVED["a"] and m["keys"] == {}
    # On a log axis 1.5 and 15 lie as far apart as 15 and 150: with everything drawn, the three
    # hottest rows of a column are evenly spaced.
    card.locator('button[data-keys="highlight"]').click()
    wait_for(lambda: "keys" not in board_options(srv, board, dist))
    rows = in_page(page, dist, "(() => { const m = p.body.m, col = m.times.findIndex((_, i) => m.present[i]);"
                               "const c = m.counts[col], peaks = []; let r = 0;"
                               "while (r < c.length) { if (c[r] > 0) { let best = r;"
                               "  while (r < c.length && c[r] > 0) { if (c[r] > c[best]) best = r; r++; }"
                               "  peaks.push(best); } else r++; }"
                               "const k = m.keys.c[col]; return [...peaks, k.indexOf(Math.max(...k))]; })()")
    low, mid, high = rows
    assert low < mid < high and abs((mid - low) - (high - mid)) <= 3, rows


def test_time_ticks_and_range_labels_read_at_every_span(big, page: Page) -> None:
    srv, *_ = big
    page.goto(srv.url + "/")
    page.wait_for_selector("html[data-ready]")
    got = page.evaluate("""async () => {
        const { timeTicks, formatTick } = await import("/web/js/lib/format.js");
        const { TimeRange } = await import("/web/js/lib/time.js");
        const at = (y, m, d, hh = 0, mm = 0) => new Date(y, m - 1, d, hh, mm).getTime() / 1000;
        const ticks = (a, b, px) => {
            const t = timeTicks(a, b, px);
            return t.ticks.map((x) => formatTick(x, t.step));
        };
        const label = (a, b) => {
            const r = new TimeRange();
            Object.assign(r, { live: false, span: b - a, end: b });
            return r.describe();
        };
        const y = new Date().getFullYear();
        return {
            year: ticks(at(2025, 3, 10), at(2026, 3, 10), 600),
            month: ticks(at(2026, 1, 5), at(2026, 2, 5), 600),
            hour: ticks(at(2026, 5, 1, 10), at(2026, 5, 1, 11), 600),
            crossing: label(at(2025, 12, 7, 1, 30), at(2026, 12, 7, 1, 30)),
            thisYear: label(at(y, 1, 2, 1, 30), at(y, 1, 2, 3, 30)),
            lastYear: label(at(y - 1, 5, 2, 1, 30), at(y - 1, 5, 2, 3, 30)),
        };
    }""")
    assert 3 <= len(got["year"]) <= 600 // 80, got["year"]
    assert "2026" in got["year"], "the first of January says which year"
    assert 3 <= len(got["month"]) <= 600 // 80 and all(len(t) <= 8 for t in got["month"]), got["month"]
    assert got["hour"][0] == "10:00" and len(got["hour"]) <= 600 // 80
    assert got["crossing"] == "2025-12-07 \u2013 2026-12-07"
    assert got["thisYear"].startswith("01-02 01:30") and got["thisYear"].endswith("03:30")
    assert got["lastYear"].startswith(f"{time.localtime().tm_year - 1}-05-02 01:30")


def test_keyboard_pans_zooms_and_leaves_a_selection(big, page: Page) -> None:
    srv, cpu, _dist, board = big
    now = int(time.time())
    span = 8 * DAY
    page.goto(f"{srv.url}/?dashboard={board}&from={now - span}&to={now}")
    ready(page, cpu)

    def shown() -> tuple[int, int]:
        q = dict(part.split("=") for part in page.url.split("?")[1].split("&"))
        return int(q["from"]), int(q["to"])

    page.locator("body").press("ArrowLeft")
    wait_for(lambda: shown() == (now - span - span // 2, now - span // 2))
    page.locator("body").press("+")  # about the middle: a quarter of the span off each side
    wait_for(lambda: shown() == (now - span - span // 4, now - span // 2 - span // 4))
    page.locator("body").press("-")
    wait_for(lambda: shown() == (now - span - span // 2, now - span // 2))
    expect(page.locator("#range-label")).to_contain_text("\u2013")
    ready(page, cpu)
    row = panel(page, cpu).locator('.legend-list:not(.legend-found) .legend-row[data-key="java"]')
    row.click()
    expect(row).to_have_class("legend-row hl")
    page.locator("body").press("Escape")
    expect(row).to_have_class("legend-row")


def test_a_panel_saves_its_range_as_csv_and_png(big, page: Page, tmp_path) -> None:
    srv, cpu, dist, board = big
    now = int(time.time())
    page.goto(f"{srv.url}/?dashboard={board}&from={now - 2 * DAY}&to={now}")
    ready(page, cpu)
    ready(page, dist)
    step = in_page(page, cpu, "p.body.range.step")

    panel(page, cpu).locator('button[aria-label="panel actions"]').click()
    with page.expect_download() as got:
        page.click('[data-testid="export-csv"]')
    lines = (tmp_path / "cpu.csv")
    got.value.save_as(lines)
    rows = [r.split(",") for r in lines.read_text().splitlines()[1:]]
    java = {int(r[0]): float(r[-1]) for r in rows if r[4] == "java"}
    assert len(java) >= 2 * DAY // step - 2
    whole = [v for t, v in java.items() if t + step <= now - 2 * G and t >= now - 2 * DAY + step]
    assert whole and all(v == 6.0 * step for v in whole), "java: 360 CPU-seconds a minute"

    panel(page, dist).locator('button[aria-label="panel actions"]').click()
    with page.expect_download() as got:
        page.click('[data-testid="export-png"]')
    png = tmp_path / "dist.png"
    got.value.save_as(png)
    box = in_page(page, dist, "(() => { const a = p.body.chart.area(); "
                              "return [Math.round(a.w), Math.round(a.h)]; })()")
    with Image.open(png) as img:
        assert list(img.size) == box
        assert len(img.convert("RGB").getcolors(1 << 16) or ()) > 2, "a map, not a blank image"


def test_reorder_resize_and_collapse_are_kept_across_a_reload(big, page: Page) -> None:
    srv, cpu, dist, board = big
    now = int(time.time())
    page.goto(f"{srv.url}/?dashboard={board}&from={now - 2 * DAY}&to={now}")
    ready(page, cpu)

    def order() -> list[int]:
        return page.eval_on_selector_all("section.panel", "els => els.map((e) => Number(e.dataset.instId))")

    def saved() -> list[int]:
        doc = httpx.get(f"{srv.url}{API}/dashboards/{board}", timeout=10).json()
        return [p["instrumentation"] for p in doc["panels"]]

    assert order() == saved() == [cpu, dist]
    # Drag the distribution's title onto the breakdown: it goes first.
    panel(page, dist).locator(".panel-title").drag_to(panel(page, cpu))
    wait_for(lambda: order() == [dist, cpu] and saved() == [dist, cpu])
    # Its menu moves it back; taller; collapse the other.
    panel(page, dist).locator('button[aria-label="panel actions"]').click()
    page.click('[data-testid="move-later"]')
    wait_for(lambda: saved() == [cpu, dist])
    height = panel(page, cpu).locator(".chart").bounding_box()["height"]
    panel(page, cpu).locator('button[aria-label="panel actions"]').click()
    page.click('[data-testid="height"]')
    wait_for(lambda: board_options(srv, board, cpu).get("height") == 2)
    assert panel(page, cpu).locator(".chart").bounding_box()["height"] >= 1.9 * height
    panel(page, dist).locator("button.collapse").click()
    wait_for(lambda: board_options(srv, board, dist).get("collapsed") is True)
    expect(panel(page, dist).locator(".panel-main")).to_be_hidden()

    page.reload()
    ready(page, cpu)
    assert order() == [cpu, dist]
    assert panel(page, cpu).locator(".chart").bounding_box()["height"] >= 1.9 * height
    expect(panel(page, dist).locator(".panel-main")).to_be_hidden()
    expect(panel(page, dist).locator("button.collapse")).to_have_attribute("aria-expanded", "false")
    panel(page, dist).locator("button.collapse").click()
    expect(panel(page, dist).locator(".panel-main")).to_be_visible()
    ready(page, dist)
    wait_for(lambda: "collapsed" not in board_options(srv, board, dist))
    panel(page, cpu).locator('button[aria-label="panel actions"]').click()
    page.click('[data-testid="height"]')
    wait_for(lambda: "height" not in board_options(srv, board, cpu))


def test_compare_with_a_day_earlier_draws_it_dashed_and_says_both_averages(big, page: Page) -> None:
    srv, cpu, _dist, board = big
    now = int(time.time())
    page.goto(f"{srv.url}/?dashboard={board}&from={now - 2 * DAY}&to={now}")
    ready(page, cpu)
    panel(page, cpu).locator("select.compare").select_option(str(DAY))
    wait_for(lambda: board_options(srv, board, cpu).get("compare") == DAY)
    ready(page, cpu)
    overlay = ("(() => { const d = p.body.chart.data; return d.overlays.length && "
               "{times: d.times, step: d.step, past: d.overlays[0].values}; })()")
    drawn = wait_for(lambda: in_page(page, cpu, overlay))
    assert len(drawn["past"]) == len(drawn["times"])
    # The earlier range's per-second totals, from the minutes this test wrote.
    block = minutes((now - 4 * DAY) // G * G, 4 * DAY // G)  # the same minutes: values follow the time
    totals = dict(zip(block.times.tolist(), np.nansum(block.values, axis=1).tolist(), strict=True))
    step = drawn["step"]
    for t, shown in zip(drawn["times"], drawn["past"], strict=True):
        if shown is None:
            continue
        want = sum(totals.get(m, 0.0) for m in range(t - DAY, t - DAY + step, G)) / step
        assert abs(shown - want) < 1e-9 * want, (t, shown, want)
    text = panel(page, cpu).locator(".compare-text")
    expect(text).to_contain_text("vs")
    past = [v for v in drawn["past"] if v is not None]
    assert abs(float(text.get_attribute("data-past")) - sum(past) / len(past)) < 1e-6
    panel(page, cpu).locator("select.compare").select_option("")
    wait_for(lambda: "compare" not in board_options(srv, board, cpu))


def test_a_link_shows_what_its_sender_saw(big, browser, page: Page) -> None:
    srv, cpu, _dist, board = big
    now = int(time.time())
    page.goto(f"{srv.url}/?dashboard={board}&from={now - 2 * DAY}&to={now}")
    ready(page, cpu)
    page.locator("body").press("ArrowLeft")
    ready(page, cpu)
    row = panel(page, cpu).locator('.legend-list:not(.legend-found) .legend-row[data-key="java"]')
    row.dblclick()
    wait_for(lambda: f"sel={cpu}%3Ai%3Ajava" in page.url)
    link = page.url
    other = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        seen = other.new_page()
        seen.goto(link)
        ready(seen, cpu)
        expect(panel(seen, cpu).locator('.legend-row[data-key="java"]')).to_have_class("legend-row hl iso")
        assert seen.locator("#range-label").inner_text() == page.locator("#range-label").inner_text()
        assert in_page(seen, cpu, "[p.body.range.start, p.body.range.end]") == \
            in_page(page, cpu, "[p.body.range.start, p.body.range.end]")
    finally:
        other.close()
    page.locator("body").press("Escape")
    wait_for(lambda: "sel=" not in page.url)


def test_every_control_has_a_name_a_screen_reader_reads(big, page: Page) -> None:
    srv, cpu, dist, board = big
    now = int(time.time())
    page.goto(f"{srv.url}/?dashboard={board}&from={now - 2 * DAY}&to={now}")
    ready(page, cpu)
    ready(page, dist)
    unnamed = page.evaluate("""() => [...document.querySelectorAll(
            'button, select, input:not([type=hidden]), [role=button], [tabindex="0"]')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => !(el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
            || (el.labels && el.labels.length) || el.getAttribute('title') || el.textContent.trim()
            || el.getAttribute('placeholder')))
        .map((el) => el.outerHTML.slice(0, 120))""")
    assert unnamed == []
