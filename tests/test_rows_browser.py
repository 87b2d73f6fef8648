"""Rows of a dashboard, a heatmap's key search and its comparison with the past (#19), in a real
chromium against a real `fleetscope serve` whose store holds two days written before it started:

- a distribution by execname, per minute: ``web-00`` to ``web-39`` and ``needle``, OBS
  observations each a minute; the web keys' at 10 on the first day and at 20 on the second (so
  the second day's average is twice the first's), needle's at 30 and then 90;
- a breakdown by execname with a few minutes, the panel a collapsed row holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from fleetscope.api.control import DEFAULTS_KEY
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.series import DataPoint
from fleetscope.store.block import from_points
from fleetscope.store.history import History
from fleetscope.store.open import open_store
from tests.conftest import Server, free_port, wait_for
from tests.test_big_browser import create
from tests.test_browser import browser as browser
from tests.test_browser import in_page, panel, ready
from tests.test_browser import page as page

API = "/api/v1"
DAY = 86400
G = 60
KEYS = [*(f"web-{i:02d}" for i in range(40)), "needle"]
OBS = 2
BEFORE, AFTER = 10.0, 20.0  # the value the web keys' observations have on the first day, on the second
NEEDLE = (30.0, 90.0)  # needle's


def observed(v: float) -> Histogram:
    h = Histogram()
    for _ in range(OBS):
        h.record(v)
    return h


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, int, int]]:
    data = tmp_path_factory.mktemp("rows")
    store = open_store(f"sqlite:///{data / 'fleetscope.db'}")
    store.set_meta(DEFAULTS_KEY, str(time.time()))  # only these instrumentations
    # The range the tests show ends here, before the server (and its live agent, which feeds
    # these proc.* instrumentations too) starts.
    end = int(time.time()) // G * G - G
    dist = create(store, "cpu", ("execname", "utilization"), values.DISCRETE_HISTOGRAM, 3)
    first = {**dict.fromkeys(KEYS, observed(BEFORE)), "needle": observed(NEEDLE[0])}
    second = {**dict.fromkeys(KEYS, observed(AFTER)), "needle": observed(NEEDLE[1])}
    pts = [DataPoint(t, G, first if t < end - DAY else second, 1, 1) for t in range(end - 2 * DAY, end, G)]
    History(store).write_block(dist, from_points(pts, values.DISCRETE_HISTOGRAM))
    cpu = create(store, "cpu", ("execname",), values.DISCRETE, 3)
    History(store).write_block(cpu, from_points([DataPoint(t, G, {"java": 60.0}, 1, 1)
                                                 for t in range(end - 3600, end, G)], values.DISCRETE))
    store.close()
    srv = Server(data, free_port()).start()
    yield srv, dist.id, cpu.id, end
    srv.stop()


def document(srv: Server, board: int) -> dict:
    return httpx.get(f"{srv.url}{API}/dashboards/{board}", timeout=10).json()


def new_board(srv: Server, doc: dict) -> int:
    resp = httpx.post(f"{srv.url}{API}/dashboards", json=doc, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_a_collapsed_row_is_kept_across_a_reload_and_its_panels_ask_for_nothing(served, page: Page) -> None:
    srv, dist, cpu, end = served
    board = new_board(srv, {"name": "rows", "rows": [{"title": "apps"}],
                            "panels": [{"instrumentation": dist}, {"instrumentation": cpu, "row": 0}]})
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(f"{srv.url}/?dashboard={board}&from={end - 3600}&to={end}")
    ready(page, dist)
    ready(page, cpu)
    row = page.locator(".board-row", has_text="apps")
    expect(row.locator("button.row-toggle")).to_have_attribute("aria-expanded", "true")
    expect(row).to_contain_text("1 panel")

    row.locator("button.row-toggle").click()
    wait_for(lambda: document(srv, board)["rows"] == [{"title": "apps", "collapsed": True}])
    expect(panel(page, cpu)).to_have_count(0)

    def about_cpu(url: str) -> bool:
        ids = url.split("ids=")[1].split("&")[0].split("%2C") if "ids=" in url else []
        return (f"/instrumentations/{cpu}/" in url or f"instrumentation={cpu}" in url
                or str(cpu) in ids)

    asked.clear()
    page.reload()
    ready(page, dist)
    # Everything the page asks for on opening is asked for by then (the stream and the
    # annotations alongside the panels' first loads): nothing of the collapsed row's panel.
    wait_for(lambda: any("/annotations" in u for u in asked) and any("/stream" in u for u in asked))
    assert [u for u in asked if f"/instrumentations/{dist}/heatmap" in u], "the page's requests are seen"
    assert [u for u in asked if about_cpu(u)] == []
    expect(page.locator(".board-row button.row-toggle")).to_have_attribute("aria-expanded", "false")
    expect(panel(page, cpu)).to_have_count(0)

    # Expanded again: the panel is made and asks for its data.
    page.locator(".board-row button.row-toggle").click()
    ready(page, cpu)
    assert [u for u in asked if f"/instrumentations/{cpu}/value" in u]
    wait_for(lambda: document(srv, board)["rows"] == [{"title": "apps", "collapsed": False}])

    # The heatmap moves into the row by its menu, and stays there.
    panel(page, dist).locator('button[aria-label="panel actions"]').click()
    page.click('[data-testid="move-row"]')
    page.click('[data-testid="to-row-0"]')
    wait_for(lambda: [p.get("row") for p in document(srv, board)["panels"]] == [0, 0])
    expect(page.locator(".board-row")).to_contain_text("2 panels")
    page.reload()
    ready(page, dist)
    expect(page.locator(".board-row")).to_contain_text("2 panels")
    # Both panels follow the row's title in the grid.
    order = page.eval_on_selector_all("#grid > *", "els => els.map((e) => e.className.split(' ')[0])")
    assert order == ["board-row", "panel", "panel"]

    # A new row from the dashboard's menu; the breakdown's title dropped on it moves it there.
    page.click("#board-menu")
    page.click('[data-testid="new-row"]')
    page.fill("#dialog-input", "later")
    page.click("#dialog-ok")
    expect(page.locator(".board-row")).to_have_count(2)
    ready(page, cpu)
    panel(page, cpu).locator(".panel-title").drag_to(page.locator(".board-row", has_text="later"))
    wait_for(lambda: document(srv, board)["rows"][1:] == [{"title": "later", "collapsed": False}]
             and [(p["instrumentation"], p.get("row")) for p in document(srv, board)["panels"]]
             == [(dist, 0), (cpu, 1)])
    order = page.eval_on_selector_all("#grid > *", "els => els.map((e) => e.className.split(' ')[0])")
    assert order == ["board-row", "panel", "board-row", "panel"]


def test_a_heatmap_key_search_finds_a_key_not_drawn_and_isolates_it(served, page: Page) -> None:
    srv, dist, _cpu, end = served
    board = new_board(srv, {"name": "search", "panels": [{"instrumentation": dist}]})
    page.goto(f"{srv.url}/?dashboard={board}&from={end - DAY}&to={end}")
    ready(page, dist)
    card = panel(page, dist)
    assert in_page(page, dist, "Object.keys(p.body.m.keys)") == [], "no key drawn apart"
    search = card.locator("input.legend-search")
    search.fill("web-3")
    found = card.locator(".legend-found .legend-row")
    expect(found).to_have_count(10)  # web-30 to web-39, out of every key of the range
    search.fill("need")
    expect(found).to_have_count(1)
    found.first.click()
    wait_for(lambda: document(srv, board)["panels"][0]["options"].get("selected") == ["needle"])
    card.locator('button[data-keys="isolate"]').click()
    wait_for(lambda: document(srv, board)["panels"][0]["options"].get("keys") == "isolate")
    ready(page, dist)
    m = in_page(page, dist, "(() => { const m = p.body.m;"
                            "const sum = (cols) => cols.flat().reduce((a, b) => a + b, 0);"
                            "return { rest: sum(m.counts), keys: Object.fromEntries(Object.entries(m.keys)"
                            ".map(([k, v]) => [k, sum(v)])), n: m.present.filter(Boolean).length }; })()")
    assert round(m["rest"]) == 0 and list(m["keys"]) == ["needle"]
    # Only needle's observations: OBS a minute, every minute of the range shown, give or take the
    # columns at its two edges (the range need not fall on the steps) and the floats' rounding.
    step = in_page(page, dist, "p.body.m.step")
    assert abs(m["keys"]["needle"] - OBS * (step // G) * m["n"]) <= OBS * (step // G) + 0.5, m


def test_a_heatmap_compared_with_a_day_earlier_draws_its_lines_and_the_change(served, page: Page) -> None:
    srv, dist, _cpu, end = served
    board = new_board(srv, {"name": "compare", "panels": [{"instrumentation": dist, "options": {
        "overlays": ["p50"], "selected": ["needle"], "keys": "isolate"}}]})
    page.goto(f"{srv.url}/?dashboard={board}&from={end - DAY}&to={end}")
    ready(page, dist)
    card = panel(page, dist)
    card.locator("select.compare").select_option(str(DAY))
    wait_for(lambda: document(srv, board)["panels"][0]["options"].get("compare") == DAY)
    text = card.locator(".compare-text")

    def compared(before: float, after: float) -> None:
        """The earlier day's lines read ``before`` (buckets: within 5 %) wherever a column lies
        wholly in that day (the last may reach into the second day), and the averages of both
        ranges ``after`` and ``before``."""
        ready(page, dist)
        drawn = wait_for(lambda: in_page(page, dist, "p.body.chart.pastDrawn?.length && {"
                                                     " names: p.body.chart.pastDrawn, past: p.body.past,"
                                                     " start: p.body.m.start_time, step: p.body.m.step }"))
        assert drawn["names"] == ["avg", "p50"]
        step = drawn["step"]
        for name in ("avg", "p50"):
            line = drawn["past"][name]
            whole = [v for i, v in enumerate(line) if drawn["start"] - DAY + (i + 1) * step <= end - DAY]
            assert len(whole) >= len(line) - 2 and None not in whole, name
            assert all(abs(v - before) < 0.05 * before for v in whole), (name, whole)
        now, past = float(text.get_attribute("data-now")), float(text.get_attribute("data-past"))
        assert abs(now - after) < 0.05 * after and abs(past - before) < 0.05 * before, (now, past)
        expect(text).to_contain_text(f"(+{(now - past) / past * 100:.1f} %)")
        # As many observations a minute on both days: counts alike (but for a column at an edge).
        counts = float(text.get_attribute("data-count-now")), float(text.get_attribute("data-count-past"))
        assert counts[0] > 0 and abs(counts[0] - counts[1]) <= 0.02 * counts[1], counts

    # Isolated, the lines and averages are needle's; excluded, the web keys'.
    compared(*NEEDLE)
    expect(card.locator(".legend-row.past")).to_have_count(2)
    card.locator('button[data-keys="exclude"]').click()
    wait_for(lambda: document(srv, board)["panels"][0]["options"].get("keys") == "exclude")
    wait_for(lambda: abs(float(text.get_attribute("data-past") or 0) - BEFORE) < 0.05 * BEFORE)
    compared(BEFORE, AFTER)
    card.locator("select.compare").select_option("")
    wait_for(lambda: "compare" not in document(srv, board)["panels"][0]["options"])
    expect(text).to_have_text("")
