"""The histogram hot paths, one at a time, in process: what each costs per value or per histogram.

    .venv/bin/python bench/histogram.py [--rounds 7]

* ``record``: an agent recording values (log-normal latencies, 100,000 of them) into one
  histogram, per value;
* ``merge``: an aggregator adding histograms of about 20 buckets into a slot's accumulator,
  per histogram merged;
* ``decode_msgpack``: the aggregator decoding such a histogram off the bus (the checked fast
  path), per histogram; ``from_json`` the same from a JSON object (the API's path);
* ``to_json``: encoding one, per histogram;
* ``quantile``: one p99 estimate of such a histogram;
* ``chunk`` and ``rollup``: a raw-tier chunk of an hour of one-second histograms encoded and
  decoded, and rolled up to minutes, per chunk.

Each figure is the best of ``--rounds`` rounds (the least disturbed by other processes). To
compare two versions of the code on the same machine, run this file against each tree in
turn, e.g. ``PYTHONPATH=/tmp/old/src .venv/bin/python bench/histogram.py``.
"""

from __future__ import annotations

import argparse
import random
import time

import msgspec

from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.series import DataPoint
from fleetscope.store import chunkenc
from fleetscope.store.block import from_points
from fleetscope.store.rollup import rollup

RECORDED = 100_000  # values recorded per round
MERGED = 2_000  # histograms merged (and decoded, encoded) per round
SLOTS = 3_600  # one-second points in a chunk
VALUES_PER_SLOT = 40  # values behind each point of the chunk


def _latencies(rng: random.Random, n: int) -> list[float]:
    # Milliseconds, log-normal around 20 ms: about 20 buckets at schema 3 for 40 values.
    return [rng.lognormvariate(3.0, 0.6) for _ in range(n)]


def _best(rounds: int, run) -> float:
    """The smallest wall time of ``rounds`` calls of ``run``, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(20261207)
    xs = _latencies(rng, RECORDED)
    small = []
    for _ in range(MERGED):
        h = Histogram()
        for x in _latencies(rng, VALUES_PER_SLOT):
            h.record(x)
        small.append(h)
    nbuckets = sum(len(h.buckets) for h in small) / len(small)
    packed = [msgspec.msgpack.encode(values.encode(h, values.HISTOGRAM)) for h in small]
    objs = [h.to_json() for h in small]
    points = [DataPoint(1_700_000_000 + i, 1, small[i % MERGED], 1, 1) for i in range(SLOTS)]
    block = from_points(points, values.HISTOGRAM)
    chunk = chunkenc.encode(block)

    def record() -> None:
        h = Histogram()
        rec = h.record
        for x in xs:
            rec(x)

    def merge() -> None:
        acc = Histogram()
        for h in small:
            acc.merge(h)

    def decode() -> None:
        for data in packed:
            values.decode_msgpack(data, values.HISTOGRAM)

    def from_json() -> None:
        for obj in objs:
            Histogram.from_json(obj)

    def to_json() -> None:
        for h in small:
            h.to_json()

    def quantile() -> None:
        for h in small:
            h.quantile(0.99)

    def chunk_round_trip() -> None:
        chunkenc.decode(chunkenc.encode(block))

    def roll() -> None:
        rollup(block, values.HISTOGRAM, 1_700_000_000 - 1_700_000_000 % 60, 60, None)

    per = [
        ("record", "ns per value", _best(args.rounds, record) / RECORDED * 1e9),
        ("merge", "µs per histogram", _best(args.rounds, merge) / MERGED * 1e6),
        ("decode_msgpack", "µs per histogram", _best(args.rounds, decode) / MERGED * 1e6),
        ("from_json", "µs per histogram", _best(args.rounds, from_json) / MERGED * 1e6),
        ("to_json", "µs per histogram", _best(args.rounds, to_json) / MERGED * 1e6),
        ("quantile", "µs per estimate", _best(args.rounds, quantile) / MERGED * 1e6),
        ("chunk encode+decode", "ms per chunk", _best(args.rounds, chunk_round_trip) * 1e3),
        ("rollup to minutes", "ms per chunk", _best(args.rounds, roll) * 1e3),
    ]
    print(f"histograms of {nbuckets:.1f} buckets on average; chunk of {SLOTS} points, {len(chunk)} bytes")
    for name, unit, v in per:
        print(f"{name:22} {v:9.2f} {unit}")


if __name__ == "__main__":
    main()
