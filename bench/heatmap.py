"""Server-side heatmap cost: building the matrix and the PNG for one hour of per-second histograms.

    .venv/bin/python bench/heatmap.py               # 3600 columns x 100 rows
    .venv/bin/python bench/heatmap.py --columns 600 --rows 200

Columns are synthetic but realistic: log-normal values (latency-like) recorded
into schema-3 histograms, with a few hundred observations per second, so that
a column holds the number of buckets a real distribution does.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from fleetscope.api.heatmap import heatmap_matrix, render_png
from fleetscope.model.histogram import Histogram


def columns(n: int, per_column: int, sigma: float, keys: int, seed: int = 1) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if keys:
            col = {}
            for k in range(keys):
                h = Histogram()
                for _ in range(per_column // keys):
                    h.record(rng.lognormvariate(3 + k * 0.3, sigma))
                col[f"key{k}"] = h
        else:
            col = Histogram()
            for _ in range(per_column):
                col.record(rng.lognormvariate(3, sigma))
        out.append(col)
    return out


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--columns", type=int, default=3600)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"heatmap of {args.columns} columns x {args.rows} rows, {args.repeat} runs each (ms)")
    print(f"{'case':<44} {'buckets/col':>11} {'matrix p50':>10} {'png p50':>8}")
    for label, sigma, keys, selected in (("narrow distribution", 0.5, 0, ()),
                                         ("wide distribution", 1.5, 0, ()),
                                         ("5 keys, 2 selected", 0.8, 5, ("key0", "key3"))):
        cols = columns(args.columns, 300, sigma, keys)
        nb = statistics.fmean(
            sum(len(h.buckets) for h in c.values()) if isinstance(c, dict) else len(c.buckets) for c in cols)
        matrix = heatmap_matrix(cols, nbuckets=args.rows, selected=selected)
        m = timed(lambda cols=cols, selected=selected: heatmap_matrix(cols, nbuckets=args.rows,
                                                                      selected=selected), args.repeat)
        p = timed(lambda matrix=matrix: render_png(matrix, width=1200, height=400), args.repeat)
        print(f"{label:<44} {nb:>11.0f} {statistics.median(m):>10.1f} {statistics.median(p):>8.1f}")


if __name__ == "__main__":
    main()
