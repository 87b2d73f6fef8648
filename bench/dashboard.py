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

With ``--year`` (#19), instead: the store of bench/big_range.py (a year of per-minute
``proc.cpu`` by execname, 973 keys, top 50 a minute) next to serve's default
instrumentations, and a dashboard of 12 panels (the year's breakdown, the process heatmap and
ten other defaults) opened over the last 365 days: time to the first chart and to all charts
(``performance.now()`` from navigation start), the time of a pan (half a span back, then
forward again: the pan buttons) and of a zoom (in to the middle half, then out again: what
the + and - keys do) until every panel has drawn
its new range, requests included (p50/p99 over ``--moves`` moves), the redraw of every panel
alone (series and paint, no request), the JS heap after the moves, and the number and size of
the requests (the largest one). Each figure is printed with the server's peak RSS.

A move has two times, measured in the page at each animation frame after it: until every panel
**shows the new range** (``data-shown``: drawn at once from what the panel holds: a line panel
from the answers it kept or prefetched, a heatmap from its image moved and stretched), and until
every panel has **drawn the exact answer** (no ``data-loading``). Between moves the bench waits
until the panels' prefetches are done, as a user looks at the chart before the next move; then
it makes as many moves again one right after the other (the prefetches cut short).

    .venv/bin/python bench/dashboard.py --year --moves 20
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


SETTLED_JS = """() => window.fleetscope.panels.every((p) => !p.el.dataset.loading
    && ["ready", "empty", "error"].includes(p.el.dataset.state))"""


# One move, timed in the page at each animation frame after it: until every panel shows the new
# range (data-shown: drawn from what it held, see panels/body.js), and until every panel has
# drawn the answer to it (no data-loading). [shown, exact] in ms.
MOVE_JS = """async (kind) => {
    const panels = window.fleetscope.panels;
    const shownAll = () => panels.every((p) => !p.body || p.el.dataset.shown === p.el.dataset.wanted
        || ["empty", "error"].includes(p.el.dataset.state));
    const settled = () => panels.every((p) => !p.el.dataset.loading
        && ["ready", "empty", "error"].includes(p.el.dataset.state));
    const t = window.fleetscope.time;
    const t0 = performance.now();
    ({back: () => document.querySelector("#pan-back").click(),
      forward: () => document.querySelector("#pan-fwd").click(),
      in: () => t.zoom(0.5),
      out: () => t.zoom(2)})[kind]();
    let shown = null;
    while (performance.now() - t0 < 120000) {
        await new Promise(requestAnimationFrame);
        const at = performance.now() - t0;
        if (shown === null && shownAll()) shown = at;
        if (settled()) return [shown ?? at, at];
    }
    throw new Error("the panels did not settle in 120 s");
}"""
IDLE_JS = "() => !document.querySelector('section.panel[data-prefetching]')"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def year(args: argparse.Namespace) -> None:
    """The issue's dashboard over a year (see the module docstring)."""
    from pathlib import Path

    from big_range import DAY, make_store, rss_mb

    with tempfile.TemporaryDirectory() as data_dir:
        end = int(time.time()) // DAY * DAY
        inst_id = make_store(Path(data_dir), 365, 973, end, defaults=True)
        proc, url = start_server(data_dir)
        try:
            with httpx.Client(base_url=url) as client:
                insts = client.get("/api/v1/instrumentations").json()["instrumentations"]
                heat = next(i["id"] for i in insts if i["decomposition"] == ["execname", "utilization"]
                            or i["decomposition"] == ["utilization"])
                others = [i["id"] for i in insts if i["id"] not in (inst_id, heat)][:10]
                board = client.post("/api/v1/dashboards", json={"name": "year", "panels": [
                    {"instrumentation": i} for i in (inst_id, heat, *others)]}).json()
            npanels = len(board["panels"])
            now = int(time.time())
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport=VIEWPORT)
                page = context.new_page()

                responses = []
                page.on("requestfinished", lambda r: "/api/" in r.url and responses.append(r))
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
                page.goto(f"{url}/?dashboard={board['id']}&from={now - 365 * DAY}&to={now}")
                page.wait_for_selector("html[data-ready]", timeout=60_000)
                first = page.evaluate("window.fleetscope.firstChart")
                page.wait_for_function(SETTLED_JS, timeout=120_000)
                every = page.evaluate("performance.now()")
                loaded = len(responses)
                page.wait_for_function(IDLE_JS, timeout=120_000)

                def move(kind: str, pause: bool) -> tuple[float, float]:
                    shown, exact = page.evaluate(MOVE_JS, kind)
                    if pause:  # a user looks at the chart before moving on: the prefetches finish
                        page.wait_for_function(IDLE_JS, timeout=120_000)
                    return shown, exact

                pans, zooms, rapid = [], [], []
                for i in range(args.moves):
                    pans.append(move("back" if i % 2 == 0 else "forward", True))
                    zooms.append(move("in" if i % 2 == 0 else "out", True))
                # The same moves one after the other: each starts as soon as the last is drawn,
                # cancelling the prefetches on their way.
                for i in range(args.moves):
                    rapid.append(move(("back", "in", "forward", "out")[i % 4], False))
                page.wait_for_function(IDLE_JS, timeout=120_000)
                # The redraw alone (no request): every panel recomputes its series and paints.
                redraw = page.evaluate("""(n) => {
                    const out = [];
                    for (let i = 0; i < n; i++) {
                        const t = performance.now();
                        for (const p of window.fleetscope.panels) if (p.body) {
                            p.body.draw();
                            p.body.chart.paint();
                        }
                        out.push(performance.now() - t);
                    }
                    return out;
                }""", max(20, args.moves))
                cdp = context.new_cdp_session(page)
                cdp.send("HeapProfiler.collectGarbage")
                heap = cdp.send("Runtime.getHeapUsage")["usedSize"] / 1e6
                # bytes as received (gzip where the API compressed it), and as decoded
                requests = [(r.url, r.sizes()["responseBodySize"]) for r in responses]
                load_requests = requests[:loaded]
                browser.close()
            peak = rss_mb(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(15)
    sizes = [n for _, n in requests]
    biggest = max(requests, key=lambda r: r[1])
    print(f"dashboard over 365 days: {npanels} panels (a year of minutes by 973 keys, the process heatmap, "
          "defaults), chromium headless 1280x720")
    print(f"first chart                         {first:8.0f} ms")
    print(f"all charts                          {every:8.0f} ms   ({len(load_requests)} API requests, "
          f"{sum(n for _, n in load_requests) / 1e6:.2f} MB)")
    for name, moves in ((f"pan (half a span), {len(pans)} moves", pans),
                        (f"zoom (x2 in, x2 out), {len(zooms)} moves", zooms),
                        (f"no pause (pan, zoom), {len(rapid)} moves", rapid)):
        for i, what in ((0, "new range shown"), (1, "exact answer drawn")):
            samples = [m[i] for m in moves]
            print(f"{name + ': ' + what:52s} p50 {statistics.median(samples):6.0f} ms   "
                  f"p99 {percentile(samples, 0.99):6.0f} ms")
    print(f"redraw of all {npanels} panels, no request  p50 {statistics.median(redraw):6.1f} ms   "
          f"p99 {percentile(redraw, 0.99):6.1f} ms")
    print(f"JS heap after the moves (after GC)  {heap:8.1f} MB")
    print(f"requests: {len(sizes)}, {sum(sizes) / 1e6:.1f} MB in all, largest {biggest[1] / 1e6:.2f} MB "
          f"({biggest[0].split('?')[0].split('/api/v1/')[-1]})")
    print(f"server peak RSS                     {peak:8.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--year", action="store_true", help="the #19 figures: 12 panels over a year")
    ap.add_argument("--moves", type=int, default=20, help="pans and zooms (--year)")
    ap.add_argument("--loads", type=int, default=7, help="page loads for the first-chart time")
    ap.add_argument("--redraws", type=int, default=30, help="redraws per heatmap size")
    ap.add_argument("--fill", type=int, default=20, help="seconds of data before the redraw test")
    args = ap.parse_args()
    if args.year:
        return year(args)

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
