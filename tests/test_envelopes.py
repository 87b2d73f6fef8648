"""Min/max envelopes (#19): a step coarser than the data hides its peaks, so ``/value`` can say
per step the smallest and the largest of the finer points inside it, and the line panels draw
them as a band per pixel column behind the line.

A real `fleetscope serve` (tokens required) over a store written before it started: per-minute
``proc.cpu`` for 40 days, 1 s/s of CPU every minute but one, where it is 50 s/s (a one-minute
spike); as a single value and as a breakdown (two keys, the spike in one). Over 40 days the
dashboard asks for four-hour steps, whose averages hide the spike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page

from fleetscope.api import queries
from fleetscope.api.control import DEFAULTS_KEY
from fleetscope.model import values
from fleetscope.model.metrics import INTERVAL
from fleetscope.model.tiers import Tier
from fleetscope.store.base import HistoryChange
from fleetscope.store.block import Block, compact_columns, take
from fleetscope.store.chunkio import to_chunks
from fleetscope.store.history import History
from fleetscope.store.open import open_store
from fleetscope.store.rollup import rollup
from tests.conftest import Server, free_port
from tests.test_browser import browser as browser
from tests.test_browser import in_page, ready
from tests.test_browser import page as page

API = "/api/v1"
DAY = 86400
G = 60
DAYS = 40
BASE = 60.0  # CPU seconds a minute: 1 s/s
SPIKE = 3000.0  # 50 s/s for one minute
STEP = 14400  # the dashboard's step over 40 days (lib/time.js stepFor)


def create(store, decomposition: tuple[str, ...], shape: str):
    return store.create_instrumentation({
        "module": "proc", "stat": "cpu", "predicate": {}, "decomposition": decomposition,
        "granularity": G, "retention": 600, "idle_max": 0, "persist": True, "kind": INTERVAL,
        "shape": shape, "discrete": "execname" if decomposition else None,
        "numeric": "utilization" if shape == values.DISCRETE_HISTOGRAM else None,
        "history": {"second": (DAYS + 5) * DAY, "hour": 365 * DAY}}, 0.0)


def write(store, inst, keys: tuple[str, ...], end: int, spike_at: int) -> None:
    """DAYS of minutes ending at ``end``: BASE in the last key every minute (and 30 in the others),
    SPIKE in the last key at ``spike_at``; and their hours, as the compactor rolls them up."""
    history = History(store)
    hour_tier = history.tiers(inst)[1]
    done = end - end % 3600
    first = end - DAYS * DAY - (end - DAYS * DAY) % 3600  # days split on hours: no hour written twice
    for start in range(first, end, DAY):
        n = min(DAY, end - start) // G
        times = start + np.arange(n, dtype=np.int64) * G
        vals = np.full((n, len(keys)), 30.0)
        vals[:, -1] = np.where(times == spike_at, SPIKE, BASE)
        ones = np.ones(n, np.int64)
        block = compact_columns(Block(times, ones, ones, ones, np.zeros(n, bool), keys, vals, None))
        history.write_block(inst, block)
        hours = rollup(block, inst.shape, start - start % 3600, 3600, 50)
        store.write_history(HistoryChange(add=to_chunks(inst.id, hour_tier, take(hours, hours.times < done)),
                                          watermarks=[(inst.id, hour_tier.level, min(done, start + DAY))]))


@pytest.fixture(scope="module")
def spiky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    data = tmp_path_factory.mktemp("envelopes")
    store = open_store(f"sqlite:///{data / 'fleetscope.db'}")
    store.set_meta(DEFAULTS_KEY, str(time.time()))  # only these instrumentations
    end = int(time.time()) // G * G - G
    spike_at = end - DAYS * DAY // 2 + 37 * G
    one = create(store, (), values.SCALAR)
    write(store, one, ("",), end, spike_at)
    by = create(store, ("execname",), values.DISCRETE)
    write(store, by, ("bash", "java"), end, spike_at)
    dist = create(store, ("utilization",), values.HISTOGRAM)
    store.close()
    srv = Server(data, free_port(), auth=True).start()
    admin = {"authorization": f"Bearer {srv.token('admin')}"}
    with httpx.Client(base_url=srv.url, timeout=30, headers=admin) as client:
        made = client.post(f"{API}/tenants", json={"name": "acme", "scope": 'container == "/acme"'})
        assert made.status_code == 201, made.text
        board = client.post(f"{API}/dashboards", json={"name": "spiky", "panels": [
            {"instrumentation": one.id}]}).json()
    yield {"srv": srv, "one": one.id, "by": by.id, "dist": dist.id, "spike_at": spike_at, "end": end,
           "board": board["id"], "admin": admin,
           "viewer": {"authorization": f"Bearer {srv.token('v', 'viewer')}"},
           "acme": {"authorization": f"Bearer {srv.token('acme', 'viewer', 'acme')}"}}
    srv.stop()


def login(page: Page, s: dict) -> None:
    """The page's session: the viewer's token given to the login route (the cookie goes to the
    page's context)."""
    resp = page.request.post(f"{s['srv'].url}{API}/login", data={"token": s["viewer"]["authorization"][7:]})
    assert resp.ok, resp.text()


def year_view(s: dict, inst_id: int, headers: dict) -> httpx.Response:
    """The range over DAYS as the dashboard asks it, with envelopes."""
    end = -(-s["end"] // STEP) * STEP
    return httpx.get(f"{s['srv'].url}{API}/instrumentations/{inst_id}/value", headers=headers, timeout=30,
                     params={"start_time": end - DAYS * DAY, "end_time": end, "duration": STEP,
                             "envelope": "true"})


@pytest.mark.parametrize(("which", "others"), [("one", 0.0), ("by", 30.0)])
def test_a_coarse_steps_envelope_holds_the_one_minute_spike_its_average_hides(
        spiky: dict, which: str, others: float) -> None:
    resp = year_view(spiky, spiky[which], spiky["viewer"])
    assert resp.status_code == 200, resp.text
    pts = resp.json()
    assert {p["duration"] for p in pts} == {STEP}
    at = spiky["spike_at"]
    hit = next(p for p in pts if p["start_time"] <= at < p["start_time"] + STEP)
    total = (lambda v: v) if which == "one" else (lambda v: sum(v.values()))
    # The step's value: 239 minutes of BASE and the spike (and the other key's minutes); its
    # envelope: the minutes themselves, the spike as it was written.
    per_minute = STEP // G
    assert total(hit["value"]) == (per_minute - 1) * BASE + SPIKE + per_minute * others
    assert hit["envelope"] == {"min": BASE + others, "max": SPIKE + others, "resolution": G}
    rest = [p["envelope"] for p in pts if p is not hit and p["value"] is not None]
    assert rest and all(e == {"min": BASE + others, "max": BASE + others, "resolution": G} for e in rest)
    # Without the parameter, the answer is as it was.
    plain = httpx.get(str(resp.request.url).replace("&envelope=true", ""), headers=spiky["viewer"],
                      timeout=30)
    assert [p["value"] for p in plain.json()] == [p["value"] for p in pts]
    assert "envelope" not in plain.json()[0]


def test_envelopes_are_read_through_the_callers_scope_and_only_for_numbers(spiky: dict) -> None:
    assert year_view(spiky, spiky["one"], spiky["acme"]).status_code == 404  # another tenant's
    resp = year_view(spiky, spiky["dist"], spiky["viewer"])
    assert resp.status_code == 409 and resp.json()["error"]["field"] == "envelope", resp.text
    bad = httpx.get(f"{spiky['srv'].url}{API}/instrumentations/{spiky['one']}/value", headers=spiky["viewer"],
                    params={"ndatapoints": 10, "envelope": "sometimes"}, timeout=10)
    assert bad.status_code == 422 and "envelope" in bad.text


def test_the_envelope_reads_the_finest_tier_within_its_budget() -> None:
    now = 1_800_000_000
    tiers = (Tier(0, "second", 1, 7 * DAY, 3600), Tier(1, "minute", 60, 30 * DAY, DAY),
             Tier(2, "hour", 3600, 365 * DAY, 30 * DAY))
    day = queries.Range(now - DAY, 300, 288)
    plan = queries.envelope_plan(tiers, day, now)
    assert [(t.name, s, e) for t, s, e in plan] == [("second", day.start, day.end)]
    # A year in two-day steps: minutes for the last 30 days (43,200 rows), hours before them; a
    # year of seconds or minutes would be over the budget.
    year = queries.Range(now - now % 172800 - 180 * 172800, 172800, 180)
    plan = queries.envelope_plan(tiers, year, now)
    assert [t.name for t, _s, _e in plan] == ["minute", "hour"]
    (_, cut, end), (_, start, cut2) = plan
    assert (end, start, cut2) == (year.end, year.start, cut) and (cut - year.start) % year.duration == 0
    assert now - 30 * DAY <= cut < now - 30 * DAY + year.duration
    assert sum(queries.rows_read(t, s, e, now) for t, s, e in plan) <= queries.ENVELOPE_BUDGET
    assert queries.envelope_plan(tiers, queries.Range(now - 3600, 1, 3600), now) == []  # nothing finer

def test_a_line_panel_draws_the_band_per_pixel_column_and_it_holds_the_spike(spiky: dict, page: Page) -> None:
    srv = spiky["srv"]
    login(page, spiky)
    now = int(time.time())
    page.goto(f"{srv.url}/?dashboard={spiky['board']}&from={now - DAYS * DAY}&to={now}")
    ready(page, spiky["one"])
    band = in_page(page, spiky["one"], """((at) => {  // at: the spike's time
        const c = p.body.chart, b = c.bandDrawn, a = c.a, d = c.data;
        if (!b) return null;
        const i = Math.floor((at - d.start) / (d.end - d.start) * a.w);  // the spike's column
        const ctx = c.canvas.getContext("2d"), dpr = c.dpr;
        const px = (y) => Array.from(ctx.getImageData(Math.floor((b.x0 + i + 0.5) * dpr),
                                                      Math.round(y * dpr), 1, 1).data);
        // the pixel just under the band's top in that column, and one at the same height in a
        // column far from it
        const far = (y) => Array.from(ctx.getImageData(Math.floor((b.x0 + (i + a.w / 2) % a.w) * dpr),
                                                       Math.round(y * dpr), 1, 1).data);
        return {columns: b.hi.length, width: a.w, top: Math.max(...b.hi.filter((v) => v !== null)),
                hi: b.hi[i], lo: b.lo[i], time: b.time(i), inside: px(b.y(b.hi[i]) + 2),
                outside: far(b.y(b.hi[i]) + 2), line: c.lineMax};
    })(AT)""".replace("AT", str(spiky["spike_at"])))
    assert band is not None, "no band drawn"
    assert band["columns"] == round(band["width"])  # one per pixel column
    assert band["time"][0] <= spiky["spike_at"] < band["time"][1]
    assert band["hi"] == band["top"] == SPIKE / G  # 50 s/s: the spike's minute, as a rate
    assert band["lo"] == BASE / G
    assert band["line"] < 2 * BASE / G  # the line itself (four-hour averages) stays near 1 s/s
    assert band["inside"][3] > 0 and band["inside"] != band["outside"], band


def test_a_pan_and_a_zoom_show_the_new_range_at_once_and_end_with_the_servers_answer(
        spiky: dict, page: Page) -> None:
    """The panel draws the range it moves to from the answers it kept and prefetched, then
    the server's answer; what it ends with is what the API answers for that range."""
    srv, one = spiky["srv"], spiky["one"]
    login(page, spiky)
    now = int(time.time())
    page.goto(f"{srv.url}/?dashboard={spiky['board']}&from={now - 8 * DAY}&to={now - 2 * DAY}")
    ready(page, one)
    card = page.locator(f'section.panel[data-inst-id="{one}"]')
    shown_now = """(() => ({wanted: p.el.dataset.wanted, shown: p.el.dataset.shown,
                            values: p.body.pts.filter((q) => q.value !== null).length,
                            n: p.body.pts.length}))()"""
    for key in ("ArrowLeft", "+", "-", "ArrowRight"):
        page.wait_for_function(f"() => !document.querySelector('section.panel[data-inst-id=\"{one}\"]')"
                               ".matches('[data-prefetching], [data-loading]')")
        page.locator("body").press(key)
        at_once = in_page(page, one, shown_now)
        assert at_once["shown"] == at_once["wanted"], (key, at_once)
        assert at_once["values"] >= at_once["n"] // 2, (key, at_once)  # data, not an empty frame
        ready(page, one)
        start, end = map(int, card.get_attribute("data-wanted").split(":"))
        drawn = in_page(page, one, "p.body.pts.map((q) => [q.start_time, q.duration, q.value, q.envelope])")
        step = drawn[0][1]
        answer = httpx.get(f"{srv.url}{API}/instrumentations/{one}/value", headers=spiky["viewer"],
                           timeout=30, params={"start_time": start, "end_time": end, "duration": step,
                                               "envelope": "true"}).json()
        assert drawn == [[p["start_time"], p["duration"], p["value"], p["envelope"]] for p in answer], key
