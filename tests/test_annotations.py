"""``/api/v1/annotations`` (#19) on a real `fleetscope serve` with tokens: operators post and
delete, viewers read, a tenant reads and deletes only its own, bad bodies name the field, and
the dashboard draws each annotation on every panel of its time, and the API's heatmap and line
PNGs (a panel's "Save PNG") mark those their caller may see."""

from __future__ import annotations

import io
import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page

from tests import store_backends
from tests.conftest import Server, free_port, wait_for
from tests.test_browser import browser as browser
from tests.test_browser import page as page
from tests.test_browser import ready

API = "/api/v1"
# The store fixtures, once per backend (SQLite and PostgreSQL).
pg_url, backend_url, store = store_backends.pg_url, store_backends.backend_url, store_backends.store


def test_the_table_on_both_backends(store) -> None:
    t0 = 1_800_000_000.0 + time.time() % 1000  # a range of this test's own
    a = store.add_annotation("", {"time": t0, "end_time": None, "text": "a", "tags": [], "who": "x"})
    b = store.add_annotation("acme", {"time": t0 + 5, "end_time": t0 + 9, "text": "b", "tags": ["t"],
                                      "who": "y"})
    assert [x["text"] for x in store.annotations(t0, t0 + 10, None)] == ["a", "b"]
    assert store.annotations(t0, t0 + 10, "acme") == [b]
    assert store.annotations(t0 + 1, t0 + 5, None) == []
    assert not store.delete_annotation(a["id"], "acme") and store.delete_annotation(a["id"], "")
    assert store.annotations(t0, t0 + 10, None) == [b]


def as_(srv: Server, token: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url + API, timeout=10, headers={"authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, httpx.Client]]]:
    srv = Server(tmp_path_factory.mktemp("annotations"), free_port(), auth=True).start()
    admin = as_(srv, srv.token("an-admin"))
    assert admin.post("/tenants", json={"name": "acme", "scope": 'hostname == "acme-db"'}).status_code == 201
    who = {"admin": admin, "operator": as_(srv, srv.token("an-op", "operator")),
           "viewer": as_(srv, srv.token("an-viewer", "viewer")),
           "acme": as_(srv, srv.token("an-acme", "operator", "acme"))}
    yield srv, who
    for c in who.values():
        c.close()
    srv.stop()


def test_post_list_and_delete_with_roles_and_tenants(served) -> None:
    _srv, who = served
    now = time.time()
    made = who["operator"].post("/annotations", json={"text": "deploy api v42", "tags": ["deploy"],
                                                     "time": now - 60})
    assert made.status_code == 201, made.text
    ours = made.json()
    assert (ours["text"], ours["tags"], ours["time"]) == ("deploy api v42", ["deploy"], now - 60)
    assert ours["kind"] == "annotation"
    theirs = who["acme"].post("/annotations", json={"text": "acme maintenance", "time": now - 30,
                                                   "end_time": now + 600}).json()
    assert who["viewer"].post("/annotations", json={"text": "no"}).status_code == 403

    def texts(client: httpx.Client, start: float = now - 3600, end: float = now + 3600) -> list[str]:
        r = client.get("/annotations", params={"start_time": start, "end_time": end})
        assert r.status_code == 200, r.text
        return [a["text"] for a in r.json()["annotations"] if a["kind"] == "annotation"]

    assert texts(who["viewer"]) == ["deploy api v42", "acme maintenance"], "operators see every one"
    assert texts(who["acme"]) == ["acme maintenance"], "a tenant only its own"
    assert texts(who["viewer"], now - 45) == ["acme maintenance"], "the range"
    # Deleting: a tenant cannot delete the operators' (it does not exist for it), an operator can.
    assert who["acme"].delete(f"/annotations/{ours['id']}").status_code == 404
    assert who["viewer"].delete(f"/annotations/{theirs['id']}").status_code == 403
    assert who["acme"].delete(f"/annotations/{theirs['id']}").status_code == 204
    assert texts(who["viewer"]) == ["deploy api v42"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "text"), ({"text": ""}, "text"), ({"text": "x" * 501}, "text"), ({"text": "a", "time": -1}, "time"),
    ({"text": "a", "time": 10, "end_time": 5}, "end_time"), ({"text": "a", "tags": ["x", "x"]}, "tags"),
    ({"text": "a", "colour": "red"}, "colour"), ({"text": "a", "time": True}, "time"),
])
def test_bad_annotations_name_the_field_and_change_nothing(served, body: dict, field: str) -> None:
    _srv, who = served
    before = who["admin"].get("/annotations", params={"start_time": 0, "end_time": 2**40}).json()
    r = who["operator"].post("/annotations", json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert who["admin"].get("/annotations", params={"start_time": 0, "end_time": 2**40}).json() == before
    r = who["viewer"].get("/annotations", params={"start_time": 10, "end_time": 5})
    assert r.status_code == 422 and r.json()["error"]["field"] == "end_time"


def test_the_dashboard_draws_annotations_on_every_panel(served, page: Page) -> None:
    srv, who = served
    now = int(time.time())
    made = who["operator"].post("/annotations", json={"text": "deploy web v7", "time": now - 120}).json()
    page.goto(srv.login_link())  # the session: a one-time link's cookie
    page.goto(f"{srv.url}/?from={now - 600}&to={now}")
    ids = page.eval_on_selector_all("section.panel", "els => els.map((e) => Number(e.dataset.instId))")
    assert len(ids) >= 2
    for inst_id in ids[:3]:
        ready(page, inst_id)
    marks = ("(id) => window.fleetscope.panels.filter((p) => p.inst)"
             ".map((p) => (p.body.chart.annotationsDrawn || [])"
             ".filter((a) => a.kind === 'annotation' && a.id === id).length)")
    # Each panel marks it once when it has drawn (a list of zeros is no answer yet).
    drawn = wait_for(lambda: (lambda d: len(d) == len(ids) and all(n == 1 for n in d) and d)(
        page.evaluate(marks, made["id"])))
    assert drawn == [1] * len(ids)


def test_imported_logs_are_annotations_of_their_time(served, tmp_path) -> None:
    _srv, who = served
    log = tmp_path / "vm.txt"
    with open(log, "wb") as out:
        subprocess.run(["vmstat", "-t", "1", "3"], stdout=out, check=True, timeout=30,
                       env={**os.environ, "LC_ALL": "C", "TZ": "UTC"})
    made = who["operator"].post("/imports", data={"format": "vmstat", "host": "an-web1"},
                                files=[("file", ("vm.txt", log.read_bytes(), "text/plain"))])
    assert made.status_code == 201, made.text
    imp = made.json()

    def imports(client: httpx.Client) -> list[dict]:
        listed = client.get("/annotations", params={"start_time": imp["start_time"] - 60,
                                                    "end_time": imp["end_time"] + 60}).json()["annotations"]
        return [a for a in listed if a["kind"] == "import"]

    mine = imports(who["viewer"])
    assert [(a["id"], a["time"], a["end_time"]) for a in mine] == [
        (imp["id"], imp["start_time"], imp["end_time"])]
    assert "an-web1" in mine[0]["text"]
    assert imports(who["acme"]) == [], "another tenant's import is not the tenant's"
    assert who["admin"].delete(f"/imports/{imp['id']}").status_code == 204


def test_an_exported_heatmap_png_marks_the_annotations_its_caller_may_see(served) -> None:
    _srv, who = served
    now = int(time.time())
    # A range of this test's own, before the server started: no other test's marks, no data.
    start, end = now - 3600 - now % 60, now - 1800 - now % 60
    ours = who["operator"].post("/annotations", json={"text": "deploy db v3", "time": start + 450}).json()
    theirs = who["acme"].post("/annotations", json={"text": "acme failover", "time": start + 1350}).json()
    made = {}
    for name in ("operator", "acme"):
        resp = who[name].post("/instrumentations", json={"metric": "proc.cpu", "retention": 600,
                                                         "decomposition": ["utilization"]})
        assert resp.status_code == 201, resp.text
        made[name] = resp.json()["id"]
    width, height = 400, 100
    mark = (47, 111, 223)  # the dashboard's --accent (api/heatmap/png.py MARK_COLOUR)

    def export(name: str, **extra) -> tuple[Image.Image, dict]:
        params = {"start_time": start, "end_time": end, "ndatapoints": 60, **extra}
        url = f"/instrumentations/{made[name]}/heatmap"
        shown = who[name].get(url, params=params).json()
        got = who[name].get(url, params={**params, "format": "png", "width": width, "height": height})
        assert got.status_code == 200 and got.headers["content-type"] == "image/png", got.text
        return Image.open(io.BytesIO(got.content)).convert("RGB"), shown

    def marked(img: Image.Image, shown: dict, at: float) -> int:
        """Pixels of the mark's colour in the column where time ``at`` falls."""
        x = int((at - shown["start_time"]) / shown["duration"] * width)
        return sum(img.getpixel((x, y)) == mark for y in range(height))

    img, shown = export("operator")
    # A dashed line down the whole height (2 on, 3 off) and its flag: at both times, for an
    # operator sees every tenant's annotations.
    assert marked(img, shown, ours["time"]) >= height * 2 // 5
    assert marked(img, shown, theirs["time"]) >= height * 2 // 5
    x = int((ours["time"] - shown["start_time"]) / shown["duration"] * width)
    assert img.getpixel((x - 3, height // 2)) == (255, 255, 255), "one column, on an empty map"
    img, shown = export("acme")
    assert marked(img, shown, theirs["time"]) >= height * 2 // 5
    assert marked(img, shown, ours["time"]) == 0, "another tenant's annotation is not in a tenant's picture"
    img, shown = export("operator", annotations="false")
    assert marked(img, shown, ours["time"]) == 0
    # Nor may a tenant draw another's instrumentation.
    assert who["acme"].get(f"/instrumentations/{made['operator']}/heatmap",
                           params={"format": "png"}).status_code == 404


def test_a_line_panels_png_is_the_apis_rendering_with_the_annotations(served, page: Page, tmp_path) -> None:
    srv, who = served
    now = int(time.time())
    # The session of an operator's token (the one-time link may have been used already).
    assert page.request.post(f"{srv.url}{API}/login", data={"token": srv.token("an-op-page", "operator")}).ok
    made = who["operator"].post("/annotations", json={"text": "deploy cache v2", "time": now - 30}).json()
    # A paused range (nothing redraws it by itself) holding the data since the server started.
    page.goto(f"{srv.url}/?from={now - 240}&to={now + 60}")
    line = wait_for(lambda: page.evaluate(
        "() => window.fleetscope.panels.find((p) => p.inst && !p.inst.numeric)?.inst.id"))
    ready(page, line)
    card = page.locator(f'section.panel[data-inst-id="{line}"]').first
    shown = wait_for(lambda: page.evaluate(
        "(id) => { const b = window.fleetscope.panels.find((p) => p.inst && p.inst.id === id).body;"
        " return b.current && { start: b.pts[0].start_time,"
        " end: b.pts[0].start_time + b.range.n * b.range.step,"
        " step: b.range.step, width: Math.round(b.chart.width), height: Math.round(b.chart.height),"
        " keys: b.current.map((s) => s.key).filter((k) => k !== '(rest)'), discrete: b.discrete,"
        " stacked: b.discrete && (b.options.chart || 'stacked') === 'stacked', top: b.chart.top }; }", line))
    card.locator('button[aria-label="panel actions"]').click()
    with page.expect_download() as got:
        page.click('[data-testid="export-png"]')
    url = httpx.URL(got.value.url)
    got.value.save_as(tmp_path / "line.png")
    # The API's rendering of what the panel shows: its range and step, its size, its keys and style.
    assert url.path == f"{API}/instrumentations/{line}/value", url
    q = url.params
    assert (q["format"], int(q["start_time"]), int(q["end_time"]), int(q["duration"])) == (
        "png", shown["start"], shown["end"], shown["step"])
    assert (int(q["width"]), int(q["height"])) == (shown["width"], shown["height"])
    assert float(q["ymax"]) == shown["top"] and q["stacked"] == str(shown["stacked"]).lower()
    if shown["discrete"]:
        assert q["selected"].split(",") == shown["keys"]
    img = Image.open(tmp_path / "line.png").convert("RGB")
    assert img.size == (shown["width"], shown["height"])
    # The API's frame round the plot (api/linechart.py AXIS), and the annotation's dashed line in
    # the accent colour where its time falls across it.
    frame = (np.asarray(img) == (120, 120, 120)).all(axis=2)
    rows = np.nonzero(frame.sum(axis=1) > img.width // 2)[0]
    cols = np.nonzero(frame.sum(axis=0) > img.height // 3)[0]
    x0, y0, x1, y1 = cols[0], rows[0], cols[-1], rows[-1]
    x = x0 + int((made["time"] - shown["start"]) / (shown["end"] - shown["start"]) * (x1 - x0))
    pixels = np.asarray(img)
    accent = (pixels[y0:y1, x] == (47, 111, 223)).all(axis=1)
    accent &= (pixels[y0:y1, x - 3] != (47, 111, 223)).any(axis=1)  # not a line of the same blue
    assert accent.sum() >= (y1 - y0) * 2 // 5, "a dashed line in the accent colour (--accent: #2f6fdf)"
