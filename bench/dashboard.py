"""Dashboard: time to the first live chart after page load, and time to redraw a one-hour heatmap.

Starts a real `fleetscope serve` on a free port and drives Debian's chromium
(headless, through Playwright, as the browser tests do) against it:

- first live chart: a fresh page (new browser context: no cache) is opened
  ``--loads`` times; each time the page records when its first panel drew
  live data (``performance.now()``, milliseconds since navigation start,
  which includes loading the HTML, the modules and the API requests).
- heatmap redraw: the default heatmap (processes by CPU utilization, 100
  buckets) is fetched from the API after ``--fill`` seconds, its real columns
  are repeated to cover one hour, and the panel's chart recomputes every
  cell's colour (rank normalisation over all cells) and repaints, ``--redraws``
  times. Two sizes: the columns the dashboard asks for over one hour (240
  columns of 15 s) and full resolution (3600 one-second columns). Also the
  cost of a repaint from the cached image (what a hover costs).

    .venv/bin/python bench/dashboard.py
    .venv/bin/python bench/dashboard.py --loads 10 --redraws 50 --fill 30
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import httpx
from playwright.sync_api import sync_playwright
from serving import start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 720}

REDRAW_JS = """async ([id, ncols, redraws]) => {
    const p = window.fleetscope.panels.find((x) => x.inst && x.inst.id === id);
    const chart = p.body.chart;
    const real = structuredClone(p.body.m);
    const n = real.times.length;
    const present = real.present.map((x, i) => x ? i : -1).filter((i) => i >= 0);
    const pick = (c) => present[c % present.length];
    const m = {...real, times: [], counts: [], present: [], clipped_below: [], clipped_above: [],
               keys: {}, step: 3600 / ncols};
    for (let c = 0; c < ncols; c++) {
        m.times.push(real.start_time + c * m.step);
        m.counts.push(real.counts[pick(c)]);
        m.present.push(true);
        m.clipped_below.push(0);
        m.clipped_above.push(0);
    }
    m.start_time = m.times[0];
    chart.setData(m, {coloring: "rank", order: [], overlays: {}});
    const data = [], full = [], paint = [];
    for (let i = 0; i < redraws; i++) {
        let t = performance.now();
        chart.setData(m);        // new data: flatten the matrix, colour every cell, paint
        data.push(performance.now() - t);
        t = performance.now();
        chart.render();          // a redraw (colouring, selection, theme): colour every cell, paint
        full.push(performance.now() - t);
        t = performance.now();
        chart.paint();           // from the cached image: what a hover costs
        paint.push(performance.now() - t);
    }
    const cells = m.counts.reduce((s, col) => s + col.filter((v) => v > 0).length, 0);
    p.body.load();
    return {data, full, paint, cells, source_columns: present.length};
}"""




def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):7.1f} {p95:7.1f} {ordered[-1]:7.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=7, help="page loads for the first-chart time")
    ap.add_argument("--redraws", type=int, default=30, help="redraws per heatmap size")
    ap.add_argument("--fill", type=int, default=20, help="seconds of data before the redraw test")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        proc, url = start_server(data_dir)
        try:
            with httpx.Client(base_url=url) as client:
                insts = client.get("/api/v1/instrumentations").json()["instrumentations"]
                heat = next(i["id"] for i in insts if i["decomposition"] == ["utilization"])
                time.sleep(3)  # a few seconds of data, as when an operator opens the page
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    first = []
                    for _ in range(args.loads):
                        context = browser.new_context(viewport=VIEWPORT)
                        page = context.new_page()
                        page.goto(url + "/")
                        page.wait_for_selector("html[data-ready]", timeout=10_000)
                        first.append(page.evaluate("window.fleetscope.firstChart"))
                        context.close()
                    time.sleep(max(0, args.fill - 3 - args.loads))
                    context = browser.new_context(viewport=VIEWPORT)
                    page = context.new_page()
                    page.goto(url + "/")
                    page.wait_for_selector(f'section.panel[data-inst-id="{heat}"][data-state="ready"]')
                    redraw = {ncols: page.evaluate(REDRAW_JS, [heat, ncols, args.redraws])
                              for ncols in (240, 3600)}
                    browser.close()
        finally:
            proc.terminate()
            proc.wait(15)

    print("dashboard (chromium headless, 1280x720)       median     p95     max   (ms)")
    print(f"first live chart after page load ({args.loads} loads)  {summary(first)}")
    for ncols, r in redraw.items():
        label = f"redraw 1 h heatmap, {ncols} x 100 ({r['cells']} filled cells)"
        print(label)
        print(f"{'  redraw: colour every cell, paint':46s}{summary(r['full'])}")
        print(f"{'  new data: flatten, colour, paint':46s}{summary(r['data'])}")
        print(f"{'  repaint from cached image (hover)':46s}{summary(r['paint'])}")
    print(f"(heatmap columns repeated from {redraw[240]['source_columns']} s of real data)")


if __name__ == "__main__":
    main()
