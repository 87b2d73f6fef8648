"""Refresh the README's dashboard screenshot (docs/screenshot.png), deliberately.

    .venv/bin/python scripts/screenshot.py                    # writes docs/screenshot.png
    .venv/bin/python scripts/screenshot.py /tmp/dashboard.png

Starts a `fleetscope serve` of its own (temporary data directory, free port), the three busy
processes and the dashboard of tests/test_browser.py (whose test_dashboard_screenshot checks the
pixels of the same view), waits for a minute of data, points at the busiest process's cell until
its details show, and writes what chromium shows (1280 x 760) as PNG. The tests never write into
the repository. On a machine with many processes the least busy one ("web-api") can be folded
into "(other)" by the slot's top keys: take the picture on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.conftest import Server, free_port, wait_for  # noqa: E402
from tests.test_browser import (  # noqa: E402
    API,
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOT_VIEWPORT,
    busy_processes_heatmap,
    point_at_details,
    ready,
    screenshot_board,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / "docs" / "screenshot.png"), help="the PNG to write")
    ap.add_argument("--fill", type=int, default=60, help="seconds of heatmap data to wait for")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(Path(data_dir), free_port()).start()
        try:
            with server.client() as client, busy_processes_heatmap(client) as heat:
                board = screenshot_board(client, heat)
                print(f"waiting for {args.fill} s of data …", flush=True)
                wait_for(lambda: len([p for p in client.get(f"{API}/instrumentations/{heat}/value",
                                                            params={"ndatapoints": args.fill}).json()
                                      if p["value"]]) >= args.fill - 2, timeout=args.fill + 30, interval=1)
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    page = browser.new_page(viewport=SCREENSHOT_VIEWPORT, color_scheme="light")
                    page.goto(f"{server.url}/?dashboard={board['id']}&range={max(60, args.fill)}")
                    ready(page, heat)
                    point_at_details(page, heat)
                    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=args.out)
                    browser.close()
        finally:
            server.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
