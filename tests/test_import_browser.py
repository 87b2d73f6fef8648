"""The Import dialog and the compare view in a real browser (Debian's chromium, headless, driven
by Playwright) against a real `fleetscope serve`: a log made by the real vmstat uploaded from the
page (progress: uploading, then the server's parse), a truncated one refused with its file, line
and reason, an import deleted, and two runs compared (the table's averages against the CSV's own
figures, both runs drawn)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Server, free_port
from tests.test_browser import Console
from tests.test_browser import browser as browser  # the module-scoped chromium fixture
from tests.test_browser import page as page

API = "/api/v1"
T0 = 1_709_546_400  # 2024-03-04 10:00 UTC
QPS = {"time_column": "time", "metrics": [{"metric": "app.qps", "field": "route", "kind": "interval"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("import-browser"), free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, timeout=30) as c:
        yield c


def open_dialog(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    page.click("#import-btn")
    expect(page.locator("#import-dialog")).to_be_visible()
    # Every state the dialog goes through, in order (a MutationObserver: nothing is missed).
    page.evaluate("""() => { window.importStates = [];
        const el = document.querySelector('#import-dialog');
        new MutationObserver(() => window.importStates.push(el.dataset.state))
          .observe(el, {attributes: true, attributeFilter: ['data-state']}); }""")


def test_upload_a_real_vmstat_log_with_progress_and_a_refusal(server: Server, page: Page,
                                                              client: httpx.Client, tmp_path: Path) -> None:
    console = Console(page)
    log = tmp_path / "vm.txt"
    log.write_bytes(subprocess.run(["vmstat", "-t", "1", "3"], capture_output=True, check=True,
                                   env={**os.environ, "LC_ALL": "C", "TZ": "UTC"}).stdout)
    open_dialog(page, server)
    page.select_option("#imp-format", "vmstat")
    page.fill("#imp-host", "web-vm")
    page.set_input_files("#imp-files", str(log))
    page.click("#imp-submit")
    expect(page.locator("#imp-status")).to_contain_text("import ")
    made = client.get("/imports").json()["imports"]
    assert [(i["host"], i["samples"], [f["name"] for f in i["files"]]) for i in made] == [
        ("web-vm", 2, ["vm.txt"])]
    expect(page.locator("#imp-status")).to_contain_text(
        f"import {made[0]['id']}: web-vm, 2 samples every 1 s")
    assert page.evaluate("window.importStates") == ["uploading", "parsing", "done"]
    expect(page.locator(f'#imp-list tr[data-import-id="{made[0]["id"]}"]')).to_contain_text("vm.txt")
    # A truncated copy: the server's reason, with the file and the line, and nothing kept.
    cut = tmp_path / "cut.txt"
    cut.write_bytes(log.read_bytes().replace(b"\n", b"  \n")[:-15])
    page.set_input_files("#imp-files", str(cut))
    page.click("#imp-submit")
    expect(page.locator("#imp-error")).to_contain_text("cut.txt: line 5: expected")
    assert page.evaluate("window.importStates").pop() == "error"
    # Nothing of it kept but its row, failed with the reason (the list shows it).
    listed = client.get("/imports").json()["imports"]
    assert [i["state"] for i in listed] == ["ready", "failed"] and "samples" not in listed[1]
    assert (listed[1]["error"]["file"], listed[1]["error"]["line"]) == ("cut.txt", 5)
    failed = page.locator(f'#imp-list tr[data-import-id="{listed[1]["id"]}"] .imp-state')
    expect(failed).to_have_text("failed")
    # Delete from the list: the import and everything it wrote.
    page.click(f'#imp-list tr[data-import-id="{made[0]["id"]}"] button')
    expect(page.locator(f'#imp-list tr[data-import-id="{made[0]["id"]}"]')).to_have_count(0)
    assert [i["state"] for i in client.get("/imports").json()["imports"]] == ["failed"]
    assert [e for e in console.errors if "422" not in e] == []  # the 422 is the refusal shown


def test_compare_two_runs_in_the_page(server: Server, page: Page, client: httpx.Client) -> None:
    runs = {"a": [(10, 1), (20, 2), (30, 3), (40, 4)], "b": [(12, 3), (18, 3), (33, 4), (61, 4)]}
    ids = {}
    for which, rows in runs.items():
        start = T0 + 86400 * (which == "b")
        text = "time,login,search\n" + "".join(f"{start + 10 * i},{a},{b}\n" for i, (a, b) in enumerate(rows))
        r = client.post("/imports", data={"format": "csv", "host": "lt1", "mapping": json.dumps(QPS)},
                        files=[("file", (f"{which}.csv", text.encode(), "text/csv"))])
        assert r.status_code == 201, r.text
        ids[which] = r.json()["id"]
    made = client.post("/instrumentations", json={"metric": "app.qps", "decomposition": ["route"]})
    inst = made.json()["id"]
    open_dialog(page, server)
    page.click("#imp-compare")
    expect(page.locator("#compare-dialog")).to_be_visible()
    page.select_option("#cmp-inst", str(inst))
    page.select_option("#cmp-a-import", str(ids["a"]))
    page.select_option("#cmp-b-import", str(ids["b"]))
    page.click("#cmp-submit")
    login = page.locator('#cmp-table tr[data-key="login"][data-stat="average"] td')
    mean_a, mean_b = (statistics.fmean(a for a, _ in runs[w]) for w in "ab")  # 25 and 31 per second
    expect(login.nth(1)).to_have_text(f"{mean_a:g}/s")
    expect(login.nth(2)).to_have_text(f"{mean_b:g}/s")
    assert login.nth(4).inner_text() == f"+{100 * (mean_b - mean_a) / mean_a:.1f} %"
    # Both runs drawn over the time since their starts: one line each, four points.
    for which in ("a", "b"):
        points = page.locator(f'#cmp-result polyline[data-run="{which}"]').get_attribute("points")
        assert len(points.split()) == 4, points


def test_a_large_csv_shows_the_upload_then_the_parse_moving_to_the_end(server: Server, page: Page,
                                                                        client: httpx.Client,
                                                                        tmp_path: Path) -> None:
    """12 MB of CSV (600,000 rows: seconds of parsing): the bar goes up with the upload, then
    with the server's reading, bytes of the file, to the end."""
    console = Console(page)
    rows = 600_000
    log = tmp_path / "large.csv"
    with open(log, "w") as f:
        f.write("time,login,search\n")
        for i in range(rows):
            f.write(f"{T0 + 10 * 86400 + i},{i % 7},1\n")
    open_dialog(page, server)
    # Every value the bar takes in the parse, with the status beside it.
    page.evaluate("""() => { window.parseBar = [];
        const bar = document.querySelector('#imp-progress');
        const dialog = document.querySelector('#import-dialog');
        new MutationObserver(() => { if (dialog.dataset.state === 'parsing' && bar.hasAttribute('value'))
            window.parseBar.push([bar.value, bar.max, document.querySelector('#imp-status').textContent]); })
          .observe(bar, {attributes: true, attributeFilter: ['value', 'max']}); }""")
    page.select_option("#imp-format", "csv")
    page.fill("#imp-host", "big-csv")
    page.fill("#imp-mapping", json.dumps(QPS))
    page.set_input_files("#imp-files", str(log))
    page.click("#imp-submit")
    expect(page.locator("#imp-status")).to_contain_text(f"{rows} samples every 1 s", timeout=120_000)
    assert page.evaluate("window.importStates") == ["uploading", "parsing", "done"]
    seen = page.evaluate("window.parseBar")
    size = log.stat().st_size
    moving = [(v, m, text) for v, m, text in seen if 0 < v < m]
    assert moving and all(m == size for _, m, _ in moving), seen[:5]
    assert any("reading large.csv" in text for _, _, text in moving), moving[:5]
    values = [v for v, _, _ in moving]
    assert values == sorted(values) and len(set(values)) >= 2, values
    assert page.evaluate("[document.querySelector('#imp-progress').value, "
                         "document.querySelector('#imp-progress').max]") == [size, size]
    made = [i for i in client.get("/imports").json()["imports"] if i["host"] == "big-csv"]
    assert [(i["state"], i["samples"]) for i in made] == [("ready", rows)]
    assert console.errors == []
