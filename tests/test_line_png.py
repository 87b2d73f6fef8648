"""``GET /api/v1/instrumentations/{id}/value?format=png`` (#19: a line panel's "Save PNG") on a
real `fleetscope serve` with tokens and two tenants: the lines lie where an imported CSV's own
constant rates say, per second, stacked or not; a legend of the keys; the annotations the caller
may see at their times; another tenant's neither drawn nor readable; bad parameters name the field.
What the panel draws besides: the same range a day earlier dashed at the earlier CSV's rates (a
tenant's of its own rows only), the envelope band up to a spike the coarse step averages away,
and the time axis in the viewer's zone.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, expect

from fleetscope.api import linechart
from fleetscope.model.types import NUMBER
from tests.conftest import wait_for
from tests.test_annotations import served as served  # a serve with tokens and the tenant acme
from tests.test_browser import VIEWPORT, in_page, ready
from tests.test_browser import browser as browser
from tests.test_envelopes import BASE, DAY, DAYS, SPIKE, STEP, G, login
from tests.test_envelopes import spiky as spiky  # a serve over 40 days of minutes with one spike

T0 = 1_709_550_000  # 2024-03-04 11:00 UTC: a range of this file's own, long before the server
SPAN = 120  # seconds of the CSV: one row a second
RATES = {"login": 40, "search": 10}  # per second, every second
EARLIER = {"lp-web": {"login": 20, "search": 5}, "acme-db": {"login": 7}}  # a day before T0, by host
MAPPING = {"time_column": "time", "metrics": [{"metric": "app.hits", "field": "route", "kind": "interval"}]}
EVENTS = {"time_column": "time", "events": {"metric": "lp.requests", "value_column": "ms"}}
LATENCY = {T0: 120, T0 - DAY: 30}  # ms: the requests' latencies start here each second (events CSV)
AXIS = (120, 120, 120)  # the plot's frame
LOGIN, SEARCH = (47, 111, 223), (224, 138, 0)  # the dashboard's first two series colours (color.js LIGHT)
MARK = (47, 111, 223)  # an annotation: --accent, as the heatmap PNG draws it
MUTED = (102, 112, 133)  # the earlier range's dashed line (app.css --muted)
WIDTH, HEIGHT = 600, 300


def upload(client: httpx.Client, host: str, start: int, rates: dict[str, int]) -> None:
    text = f"time,{','.join(rates)}\n" + "".join(
        f"{start + i},{','.join(str(v) for v in rates.values())}\n" for i in range(SPAN))
    r = client.post("/imports", data={"format": "csv", "host": host, "mapping": json.dumps(MAPPING)},
                    files=[("file", (f"{host}-{start}.csv", text.encode(), "text/csv"))])
    assert r.status_code == 201, r.text
    wait_for(lambda: client.get(f"/imports/{r.json()['id']}").json()["state"] == "ready")


def upload_events(client: httpx.Client, start: int, base: int) -> None:
    """Five requests a second for SPAN seconds from ``start``, their latencies from ``base`` ms up
    (a spread that moves a little from second to second)."""
    text = "time,ms\n" + "".join(f"{start + i},{base + (i % 5) * 4 + k * 3}\n"
                                 for i in range(SPAN) for k in range(5))
    r = client.post("/imports", data={"format": "csv", "host": "lp-web", "mapping": json.dumps(EVENTS)},
                    files=[("file", (f"events-{start}.csv", text.encode(), "text/csv"))])
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def made(served) -> dict[str, int]:
    """The CSV imported (host lp-web, not the tenant's), and the instrumentations drawn."""
    _srv, who = served
    upload(who["operator"], "lp-web", T0, RATES)
    for host, rates in EARLIER.items():
        upload(who["operator"], host, T0 - DAY, rates)
    for start, base in LATENCY.items():
        upload_events(who["operator"], start, base)
    made = {}
    for name, body in (("lines", {"metric": "app.hits", "decomposition": ["route"]}),
                       ("total", {"metric": "app.hits"}),
                       ("acme", {"metric": "app.hits", "decomposition": ["route"]}),
                       ("heat", {"metric": "proc.cpu", "decomposition": ["utilization"], "retention": 600}),
                       ("latency", {"metric": "lp.requests", "decomposition": ["latency"]})):
        r = who["acme" if name == "acme" else "operator"].post("/instrumentations", json=body)
        assert r.status_code == 201, r.text
        made[name] = r.json()["id"]
    return made


def png(client: httpx.Client, inst: int, **params) -> Image.Image:
    r = client.get(f"/instrumentations/{inst}/value", params={
        "start_time": T0, "end_time": T0 + SPAN, "duration": 10, "format": "png", "width": WIDTH,
        "height": HEIGHT, **params})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    return Image.open(io.BytesIO(r.content)).convert("RGB")


def frame(img: Image.Image) -> tuple[int, int, int, int]:
    """The plot's box, found by its frame: the rows and columns mostly of the axis colour."""
    axis = (np.asarray(img) == AXIS).all(axis=2)
    rows = np.nonzero(axis.sum(axis=1) > img.width // 2)[0]
    cols = np.nonzero(axis.sum(axis=0) > img.height // 3)[0]
    assert len(rows) >= 2 and len(cols) >= 2, (rows, cols)
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def rows_of(img: Image.Image, colour: tuple[int, int, int], x: int) -> list[int]:
    return np.nonzero((np.asarray(img)[:, x] == colour).all(axis=1))[0].tolist()


def test_the_lines_lie_where_the_values_say(served, made) -> None:
    _srv, who = served
    img = png(who["viewer"], made["lines"], ymax=50)  # a viewer may read
    assert img.size == (WIDTH, HEIGHT)
    x0, y0, x1, y1 = frame(img)
    mid = (x0 + x1) // 2
    for colour, rate in ((LOGIN, RATES["login"]), (SEARCH, RATES["search"])):
        # Sums of 10 s drawn per second: the CSV's rate, on an axis from 0 (the frame's bottom)
        # to ymax (its top).
        want = y1 - rate / 50 * (y1 - y0)
        got = rows_of(img, colour, mid)
        assert got and all(abs(y - want) <= 1.5 for y in got), (rate, want, got)
    # The lines run across the range: from the middle of the first 10 s to that of the last.
    for frac in (1 / 24 + 0.01, 23 / 24 - 0.01):
        assert rows_of(img, LOGIN, x0 + round(frac * (x1 - x0)))
    level = round(y1 - RATES["login"] / 50 * (y1 - y0))
    early = [y for y in rows_of(img, LOGIN, x0 + 2) if abs(y - level) <= 2]
    assert not early, "nothing before the first point's middle"
    # A legend of the keys below the plot, in their colours.
    below = np.asarray(img)[y1 + 14:]
    for colour in (LOGIN, SEARCH):
        assert (below == colour).all(axis=2).sum() >= 30, colour
    # Stacked: search on top of login (40 + 10 = 50).
    img = png(who["viewer"], made["lines"], ymax=100, stacked="true")
    x0, y0, x1, y1 = frame(img)
    for colour, level in ((LOGIN, 40), (SEARCH, 50)):
        want = y1 - level / 100 * (y1 - y0)
        got = rows_of(img, colour, (x0 + x1) // 2)
        assert got and all(abs(y - want) <= 1.5 for y in got), (level, want, got)
    # One key selected: the other summed as (other), in the rest's grey, at its own level.
    img = png(who["viewer"], made["lines"], ymax=50, selected="search")
    x0, y0, x1, y1 = frame(img)
    assert all(abs(y - (y1 - 10 / 50 * (y1 - y0))) <= 1.5 for y in rows_of(img, LOGIN, (x0 + x1) // 2))
    rest = rows_of(img, (170, 179, 192), (x0 + x1) // 2)
    assert rest and all(abs(y - (y1 - 40 / 50 * (y1 - y0))) <= 1.5 for y in rest), rest
    # Isolated (other=false): the key alone.
    img = png(who["viewer"], made["lines"], ymax=50, selected="search", other="false")
    x0, _, x1, _ = frame(img)
    assert rows_of(img, LOGIN, (x0 + x1) // 2) and not rows_of(img, (170, 179, 192), (x0 + x1) // 2)
    # No breakdown: the one value, the total of both; the default axis a tidy number above it.
    img = png(who["viewer"], made["total"], ymax=100)
    x0, y0, x1, y1 = frame(img)
    got = rows_of(img, LOGIN, (x0 + x1) // 2)
    assert got and all(abs(y - (y1 - 50 / 100 * (y1 - y0))) <= 1.5 for y in got), got
    img = png(who["viewer"], made["total"])
    x0, y0, x1, y1 = frame(img)
    got = rows_of(img, LOGIN, (x0 + x1) // 2)
    assert got and all(y0 <= y < y1 for y in got), "the line inside the plot when the axis fits it"


def test_annotations_the_caller_may_see_at_their_times(served, made) -> None:
    _srv, who = served
    ours = who["operator"].post("/annotations", json={"text": "deploy web v9", "time": T0 + 60}).json()
    theirs = who["acme"].post("/annotations", json={"text": "acme failover", "time": T0 + 90}).json()

    def marked(img: Image.Image, at: float) -> int:
        x0, y0, x1, y1 = frame(img)
        x = x0 + int((at - T0) / SPAN * (x1 - x0))
        # Of the mark's colour in its column but not beside it: login's line, of the same blue,
        # crosses the column, but runs across.
        return sum(img.getpixel((x, y)) == MARK != img.getpixel((x - 3, y)) for y in range(y0, y1))

    img = png(who["viewer"], made["lines"], ymax=50)
    _, y0, _, y1 = frame(img)
    # A dashed line (2 on, 3 off) down the plot: an operator's reader sees every tenant's marks.
    assert marked(img, ours["time"]) >= (y1 - y0) * 2 // 5
    assert marked(img, theirs["time"]) >= (y1 - y0) * 2 // 5
    img = png(who["acme"], made["acme"])
    _, y0, _, y1 = frame(img)
    assert marked(img, theirs["time"]) >= (y1 - y0) * 2 // 5
    assert marked(img, ours["time"]) == 0, "another tenant's annotation is not in a tenant's picture"
    assert marked(png(who["viewer"], made["lines"], ymax=50, annotations="false"), ours["time"]) == 0
    # Nor may a tenant draw another's instrumentation: it does not exist for it.
    r = who["acme"].get(f"/instrumentations/{made['lines']}/value", params={"format": "png"})
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(("params", "field"), [
    ({"width": 10}, "width"), ({"height": 5000}, "height"), ({"width": "wide"}, "width"),
    ({"top": 0}, "top"), ({"top": 51}, "top"),
    ({"selected": ",".join(f"k{i}" for i in range(51))}, "selected"),
    ({"ymax": 0}, "ymax"), ({"ymax": "inf"}, "ymax"), ({"format": "gif"}, "format"),
    ({"stacked": "maybe"}, "stacked"), ({"other": "maybe"}, "other"), ({"end_time": T0 - 10}, "end_time"),
    ({"duration": 0}, "duration"),
])
def test_bad_parameters_name_the_field(served, made, params: dict, field: str) -> None:
    _srv, who = served
    r = who["viewer"].get(f"/instrumentations/{made['lines']}/value", params={
        "start_time": T0, "end_time": T0 + SPAN, "format": "png", **params})
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_a_distribution_has_no_line_chart(served, made) -> None:
    _srv, who = served
    r = who["viewer"].get(f"/instrumentations/{made['heat']}/value", params={"format": "png"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "format", r.text
    assert "heatmap" in r.json()["error"]["message"]


def test_any_span_draws_in_bounded_work(served, made) -> None:
    """A span of 285 million years in 10,000 points: ticks as many as fit, not one a year."""
    _srv, who = served
    r = who["viewer"].get(f"/instrumentations/{made['lines']}/value", timeout=10, params={
        "start_time": 0, "end_time": 2**53, "ndatapoints": 10_000, "format": "png", "width": 4000})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    assert Image.open(io.BytesIO(r.content)).size == (4000, 300)


def plot_rows(img: Image.Image, colour: tuple[int, int, int],
              box: tuple[int, int, int, int]) -> dict[int, list[int]]:
    """Per column of the line's run (the first slot's middle to the last's), the rows inside the
    plot of ``colour``."""
    x0, y0, x1, y1 = box
    pixels = np.asarray(img)
    out = {}
    for x in range(x0 + round((x1 - x0) / 24) + 2, x0 + round((x1 - x0) * 23 / 24) - 2):
        out[x] = [y for y in np.nonzero((pixels[y0 + 1:y1, x] == colour).all(axis=1))[0] + y0 + 1]
    return out


@pytest.mark.parametrize(("who_", "inst", "ymax", "earlier"), [
    ("viewer", "total", 100, 32), ("viewer", "lines", 100, 32),  # both hosts' rows a day before
    ("acme", "acme", 40, 7),  # the tenant's compare: its own host's rows only
])
def test_compare_draws_the_day_before_dashed_at_its_rates(served, made, who_: str, inst: str, ymax: int,
                                                          earlier: int) -> None:
    _srv, who = served
    img = png(who[who_], made[inst], ymax=ymax, compare=DAY)
    box = frame(img)
    _, y0, _, y1 = box
    want = y1 - earlier / ymax * (y1 - y0)
    columns = plot_rows(img, MUTED, box)
    drawn = [x for x, ys in columns.items() if ys]
    assert all(abs(y - want) <= 1.5 for ys in columns.values() for y in ys), (want, columns)
    # Dashed (6 on, 4 off): most columns, not all.
    assert 0.4 * len(columns) <= len(drawn) <= 0.85 * len(columns), (len(drawn), len(columns))
    plain = plot_rows(png(who[who_], made[inst], ymax=ymax), MUTED, box)
    assert not any(plain.values()), "no dashed line without compare"


def test_the_compare_title_says_both_averages_as_the_toolbar() -> None:
    assert linechart.compare_label([50.0, 50.0], [32.0, None, 32.0], NUMBER, True) == (
        "avg 50/s vs 32/s (+56.2 %)")
    assert linechart.compare_label([0.0], [None], NUMBER, False) == "avg 0 vs -"


def wall(t: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(t, zone)


def test_the_time_axis_in_the_viewers_zone() -> None:
    berlin, kolkata = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata")
    hour = linechart.time_ticks(T0, T0 + 3600, 600, berlin)
    # T0 is 11:00 UTC, 12:00 in Berlin (CET): the same whole ten minutes, labelled an hour later.
    assert [t for t, _ in hour] == [t for t, _ in linechart.time_ticks(T0, T0 + 3600, 600)]
    assert [label for _, label in hour] == [wall(t, berlin).strftime("%H:%M") for t, _ in hour]
    assert hour[0][1] == "12:00"
    # Half an hour off UTC: ticks on Kolkata's whole six hours, not UTC's.
    day = linechart.time_ticks(T0, T0 + DAY, 600, kolkata)
    assert day and all(wall(t, kolkata).hour % 6 == 0 == wall(t, kolkata).minute for t, _ in day), day
    assert [label for _, label in day] == [wall(t, kolkata).strftime("%H:%M") for t, _ in day]
    assert linechart.range_label(T0, T0 + 3600, berlin) == "2024-03-04 12:00 to 13:00 Europe/Berlin"
    assert linechart.range_label(T0, T0 + 3600) == "2024-03-04 11:00 to 12:00 UTC"
    # Any span, any zone: as many ticks as fit (beyond datetime's year 9999 too).
    far = linechart.time_ticks(0, 2**53, 4000, ZoneInfo("Pacific/Kiritimati"))
    assert 0 < len(far) <= 4000 // linechart.TICK_GAP


def test_the_png_in_the_viewers_zone(served, made) -> None:
    _srv, who = served
    utc = np.asarray(png(who["viewer"], made["lines"], ymax=50))
    berlin = np.asarray(png(who["viewer"], made["lines"], ymax=50, tz="Europe/Berlin"))
    _, y0, _, y1 = frame(Image.fromarray(utc))
    assert (utc[y0:y1 + 1] == berlin[y0:y1 + 1]).all(), "the plot is the same"
    below = slice(y1 + 3, y1 + 14)  # the time labels under the axis
    assert (utc[below] != berlin[below]).any(axis=2).sum() > 20, "the time labels differ"
    assert (utc[:y0] != berlin[:y0]).any(axis=2).sum() > 20, "the title's range differs"


def test_the_envelope_band_reaches_the_spike_the_step_averages_away(spiky) -> None:
    s = spiky
    end = -(-s["end"] // STEP) * STEP
    start = end - DAYS * DAY
    with httpx.Client(base_url=s["srv"].url + "/api/v1", headers=s["viewer"], timeout=30) as client:
        def draw(**extra) -> Image.Image:
            r = client.get(f"/instrumentations/{s['one']}/value", params={
                "start_time": start, "end_time": end, "duration": STEP, "format": "png", "width": WIDTH,
                "height": HEIGHT, "ymax": 60, **extra})
            assert r.status_code == 200, r.text
            return Image.open(io.BytesIO(r.content)).convert("RGB")

        banded, plain = draw(envelope="true"), draw()
    # The band: the first series' colour at 0.22 over white (charts/lines.js drawBand's alpha).
    tint = tuple(round(c * 0.22 + 255 * 0.78) for c in LOGIN)
    x0, y0, x1, y1 = frame(banded)
    pixels = np.asarray(banded)[y0 + 1:y1]
    hit = (pixels == tint).all(axis=2)
    rows, cols = np.nonzero(hit)
    assert rows.size, "a band is drawn"
    x = x0 + (s["spike_at"] - start) / (end - start) * (x1 - x0)
    top = rows.min() + y0 + 1
    peak = SPIKE / G  # the spike's minute per second: 50/s, in a step of 1/s
    assert abs(top - (y1 - peak / 60 * (y1 - y0))) <= 2, (top, peak)
    # Elsewhere the finer points are the step's own level: the band is the line. (The last step
    # holds the minutes written so far only, under the envelope of those minutes: left out.)
    above = cols[(rows + y0 + 1 < y1 - BASE / G / 60 * (y1 - y0) - 3) & (cols < x1 - (x1 - x0) / 240 - 1)]
    assert above.size and all(abs(c - x) <= 3 for c in above), (x, sorted(set(above.tolist())))
    assert not (np.asarray(plain)[y0 + 1:y1] == tint).all(axis=2).any(), "no band unless asked"


@pytest.mark.parametrize(("params", "field"), [
    ({"tz": "Mars/Olympus"}, "tz"), ({"tz": "../../etc/passwd"}, "tz"), ({"tz": "zone.tab"}, "tz"),
    ({"tz": "x" * 100}, "tz"), ({"compare": 0}, "compare"), ({"compare": "yesterday"}, "compare"),
    ({"compare": T0 + 100}, "compare"), ({"compare": 2**60}, "compare"),
])
def test_bad_tz_and_compare_name_the_field(served, made, params: dict, field: str) -> None:
    _srv, who = served
    r = who["viewer"].get(f"/instrumentations/{made['lines']}/value", params={
        "start_time": T0, "end_time": T0 + SPAN, "duration": 10, "format": "png", **params})
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_the_panels_save_png_passes_its_zone_band_and_compare(spiky, browser: Browser, tmp_path) -> None:
    """A browser in Berlin over the spike's days, comparing with a day earlier: the panel's Save
    PNG asks the API for its zone, its band and its compare, and saves that picture."""
    s = spiky
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light", timezone_id="Europe/Berlin")
    try:
        page = context.new_page()
        login(page, s)
        at = s["spike_at"]
        page.goto(f"{s['srv'].url}/?dashboard={s['board']}&from={at - 3 * DAY}&to={at + 3 * DAY}")
        ready(page, s["one"])
        card = page.locator(f'section.panel[data-inst-id="{s["one"]}"]').first
        card.locator("select.compare").select_option(str(DAY))
        expect(card.locator(".compare-text")).to_contain_text(" vs ")
        ready(page, s["one"])
        assert in_page(page, s["one"], "!!p.body.band()"), "the panel draws a band"
        card.locator('button[aria-label="panel actions"]').click()
        with page.expect_download() as got:
            page.click('[data-testid="export-png"]')
        url = httpx.URL(got.value.url)
        got.value.save_as(tmp_path / "panel.png")
    finally:
        context.close()
    q = url.params
    assert (q["tz"], q["compare"], q["envelope"]) == ("Europe/Berlin", str(DAY), "true"), url
    direct = httpx.get(str(url), headers=s["viewer"], timeout=30)
    assert direct.status_code == 200, direct.text
    saved = np.asarray(Image.open(tmp_path / "panel.png").convert("RGB"))
    assert (saved == np.asarray(Image.open(io.BytesIO(direct.content)).convert("RGB"))).all()
    # In it: the day before dashed, and the band.
    assert (saved == MUTED).all(axis=2).sum() > 50
    assert (saved == tuple(round(c * 0.22 + 255 * 0.78) for c in LOGIN)).all(axis=2).sum() > 10


def test_a_heatmap_png_draws_the_earlier_range_lines_dashed(served, made) -> None:
    """The heatmap panel's compare: the average and the chosen percentile lines of the same columns
    earlier, dashed in --muted, where the average and percentiles APIs say they lie (imported
    requests: about 120 ms now, about 30 ms a day before)."""
    _srv, who = served
    client, inst, n, back = who["viewer"], made["latency"], 20, DAY
    start, end = T0 + 40, T0 + 40 + n
    params = {"start_time": start, "end_time": end, "ndatapoints": n, "width": 200, "height": 200,
              "ymin": 0, "ymax": 200}
    shape = client.get(f"/instrumentations/{inst}/heatmap", params=params).json()
    assert shape["step"] == 1 and len(shape["times"]) == n, shape
    params["format"] = "png"

    def draw(**extra) -> np.ndarray:
        r = client.get(f"/instrumentations/{inst}/heatmap", params={**params, **extra})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))

    plain, compared = draw(), draw(compare=back, lines="p90")
    earlier = {"start_time": start - back, "end_time": end - back, "ndatapoints": n}
    avg = [p["average"] for p in client.get(f"/instrumentations/{inst}/average", params=earlier).json()]
    p90 = [p["percentiles"]["0.9"] for p in client.get(f"/instrumentations/{inst}/percentiles", params={
        **earlier, "q": "0.9"}).json()]
    assert all(25 <= v <= 60 for v in avg + p90), (avg, p90)  # the day before's latencies
    muted = (compared == MUTED).all(axis=2)
    assert not (plain == MUTED).all(axis=2).any()
    hits = 0
    for i in range(n):
        x = round((i + 0.5) / n * 200)
        rows = np.nonzero(muted[:, x])[0]
        want = [200 - v / 200 * 200 for v in (avg[i], p90[i])]
        if rows.size:
            hits += 1
            # Each dashed pixel at a column's middle lies on one of the two lines there (a steep
            # segment runs through the point: it lies within the pixels' span).
            assert any(rows.min() - 2 <= w <= rows.max() + 2 for w in want), (i, rows, want)
    assert hits >= n // 3, hits
    # A caption of both averages in the top left corner: dark text (--text, smoothed) on white.
    def dark(img: np.ndarray) -> int:
        return int((img[:12, :60].astype(int).sum(axis=2) < 250).sum())

    assert dark(compared) > 20 and dark(plain) == 0, (dark(compared), dark(plain))


@pytest.mark.parametrize(("params", "field"), [
    ({"lines": "p100"}, "lines"), ({"lines": "avg,max"}, "lines"),
    ({"lines": ",".join(f"p{i}" for i in range(1, 10))}, "lines"),
    ({"compare": 0}, "compare"), ({"compare": "a day"}, "compare"), ({"compare": 2**53}, "compare"),
])
def test_bad_heatmap_lines_and_compare_name_the_field(served, made, params: dict, field: str) -> None:
    _srv, who = served
    r = who["viewer"].get(f"/instrumentations/{made['heat']}/heatmap", params={"format": "png", **params})
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_the_heatmap_panels_save_png_passes_its_lines_and_compare(served, made, browser: Browser,
                                                                   tmp_path) -> None:
    """A heatmap panel drawing its p90 and comparing with a day earlier: its Save PNG asks the API
    for those lines and that compare, and saves that picture."""
    srv, who = served
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    try:
        page = context.new_page()
        assert page.request.post(f"{srv.url}/api/v1/login",
                                 data={"token": srv.token("lp-op-page", "operator")}).ok
        end = who["viewer"].get(f"/instrumentations/{made['heat']}/value").json()["start_time"] + 1
        board = who["operator"].post("/dashboards", json={"name": "heat png", "panels": [
            {"instrumentation": made["heat"]}]}).json()
        page.goto(f"{srv.url}/?dashboard={board['id']}&from={end - 30}&to={end}")
        ready(page, made["heat"])
        card = page.locator(f'section.panel[data-inst-id="{made["heat"]}"]').first
        card.locator('button.seg[data-overlay="p90"]').click()
        card.locator("select.compare").select_option(str(DAY))
        expect(card.locator(".compare-text")).to_contain_text(" vs ")
        ready(page, made["heat"])
        card.locator('button[aria-label="panel actions"]').click()
        with page.expect_download() as got:
            page.click('[data-testid="export-png"]')
        url = httpx.URL(got.value.url)
        got.value.save_as(tmp_path / "heat.png")
    finally:
        context.close()
    assert (url.path, url.params["lines"], url.params["compare"]) == (
        f"/api/v1/instrumentations/{made['heat']}/heatmap", "p90", str(DAY)), url
    direct = who["viewer"].get(str(url).split("/api/v1", 1)[1])
    assert direct.status_code == 200, direct.text
    saved = np.asarray(Image.open(tmp_path / "heat.png").convert("RGB"))
    assert (saved == np.asarray(Image.open(io.BytesIO(direct.content)).convert("RGB"))).all()
