"""``GET /api/v1/instrumentations/{id}/value?format=png`` (#19: a line panel's "Save PNG") on a
real `fleetscope serve` with tokens and two tenants: the lines lie where an imported CSV's own
constant rates say, per second, stacked or not; a legend of the keys; the annotations the caller
may see at their times; another tenant's neither drawn nor readable; bad parameters name the field.
"""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.test_annotations import served as served  # a serve with tokens and the tenant acme

T0 = 1_709_550_000  # 2024-03-04 11:00 UTC: a range of this file's own, long before the server
SPAN = 120  # seconds of the CSV: one row a second
RATES = {"login": 40, "search": 10}  # per second, every second
MAPPING = {"time_column": "time", "metrics": [{"metric": "app.hits", "field": "route", "kind": "interval"}]}
AXIS = (120, 120, 120)  # the plot's frame
LOGIN, SEARCH = (47, 111, 223), (224, 138, 0)  # the dashboard's first two series colours (color.js LIGHT)
MARK = (47, 111, 223)  # an annotation: --accent, as the heatmap PNG draws it
WIDTH, HEIGHT = 600, 300


@pytest.fixture(scope="module")
def made(served) -> dict[str, int]:
    """The CSV imported (host lp-web, not the tenant's), and the instrumentations drawn."""
    _srv, who = served
    text = "time,login,search\n" + "".join(f"{T0 + i},{RATES['login']},{RATES['search']}\n"
                                           for i in range(SPAN))
    r = who["operator"].post("/imports", data={"format": "csv", "host": "lp-web",
                                               "mapping": json.dumps(MAPPING)},
                             files=[("file", ("hits.csv", text.encode(), "text/csv"))])
    assert r.status_code == 201, r.text
    made = {}
    for name, body in (("lines", {"metric": "app.hits", "decomposition": ["route"]}),
                       ("total", {"metric": "app.hits"}),
                       ("acme", {"metric": "app.hits", "decomposition": ["route"]}),
                       ("heat", {"metric": "proc.cpu", "decomposition": ["utilization"], "retention": 600})):
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
