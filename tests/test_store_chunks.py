"""Chunk encoding and columnar rollups: lossless round trips and exactness against brute force."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetscope.model import series, values
from fleetscope.model.histogram import Histogram
from fleetscope.model.metrics import INTERVAL, POINT
from fleetscope.model.series import DataPoint
from fleetscope.store import chunkenc
from fleetscope.store.block import Block, from_points, merge, nsamples, to_points
from fleetscope.store.rollup import rollup

T0 = 1_700_000_000 - 1_700_000_000 % 86400

finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.one_of(
    st.integers(-(2**40), 2**40).map(float),
    st.integers(0, 10**6).map(lambda i: i / 100),  # CPU ticks
    st.integers(-(10**9), 10**9).map(lambda i: i / 1000),
    finite,
    st.sampled_from([0.0, -0.0, 5e-324, 1e308, -1e-310, 2.0**53, 0.1 + 0.2]),
    # Sums of decimals, a few units in the last place off the decimal (fleet-wide sums).
    st.lists(st.integers(-(10**4), 10**4).map(lambda i: i / 100), min_size=2, max_size=5).map(sum),
    st.integers(1, 10**6).map(lambda i: np.nextafter(i / 100, np.inf)),
    st.integers(1, 10**6).map(lambda i: -np.nextafter(i / 1000, -np.inf)),
)


def bits(a: np.ndarray) -> np.ndarray:
    """Bit patterns, so that -0.0 != 0.0 and NaN == NaN in comparisons."""
    return np.ascontiguousarray(a, dtype=float).view(np.uint64)


def same_block(a: Block, b: Block) -> None:
    for name in ("times", "counts", "nsources", "expected", "revised"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.keys == b.keys
    if a.values is not None:
        assert np.array_equal(bits(a.values), bits(b.values))
    else:
        for x, y in zip(a.hists, b.hists, strict=True):
            assert np.array_equal(bits(x) if x.dtype.kind == "f" else x,
                                  bits(y) if y.dtype.kind == "f" else y)


@st.composite
def number_points(draw) -> list[DataPoint]:
    keys = draw(st.lists(st.text(min_size=1, max_size=6), min_size=0, max_size=6, unique=True))
    n = draw(st.integers(0, 40))
    times = sorted(draw(st.sets(st.integers(0, 500), min_size=n, max_size=n)))
    out = []
    for t in times:
        present = [k for k in keys if draw(st.booleans())]
        out.append(DataPoint(T0 + t, 1, {k: draw(numbers) for k in present}, draw(st.integers(0, 3)),
                             draw(st.integers(0, 5)), draw(st.booleans())))
    return out


@given(number_points())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_numbers_round_trip_bit_for_bit(points: list[DataPoint]) -> None:
    block = from_points(points, values.DISCRETE)
    back = chunkenc.decode(chunkenc.encode(block))
    same_block(block, back)
    got = to_points(back, values.DISCRETE, INTERVAL, 1)
    want = [p for p in points]
    assert [(p.start_time, p.nsources, p.expected, p.revised) for p in got] == \
        [(p.start_time, p.nsources, p.expected, p.revised) for p in want]
    for g, w in zip(got, want, strict=True):
        assert {k: struct.pack("<d", x) for k, x in g.value.items()} == \
            {k: struct.pack("<d", x) for k, x in w.value.items()}


def random_histogram(rng: random.Random, schema: int = 3) -> Histogram:
    h = Histogram(schema)
    for _ in range(rng.randrange(0, 60)):
        x = rng.choice([0.0, rng.randrange(1, 10_000) / 8, rng.lognormvariate(0, 3)])
        h.record(x, rng.choice([1.0, 1.0, 2.0, 0.5]))
    return h


@pytest.mark.parametrize("seed", range(6))
def test_histograms_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    points = []
    for i in range(rng.randrange(1, 80)):
        per = {f"k{j}": random_histogram(rng, rng.choice([3, 3, 2, 0, -2]))
               for j in range(rng.randrange(0, 5))}
        if rng.random() < 0.2:
            per["k0"] = Histogram(8)  # empty, other schema
        points.append(DataPoint(T0 + i * rng.choice([1, 2]), 1, per, 1, 1))
    points = sorted({p.start_time: p for p in points}.values())
    for shape, pts in ((values.DISCRETE_HISTOGRAM, points),
                       (values.HISTOGRAM, [p._replace(value=random_histogram(rng)) for p in points])):
        block = from_points(pts, shape)
        back = chunkenc.decode(chunkenc.encode(block))
        same_block(block, back)
        assert to_points(back, shape, INTERVAL, 1) == pts


def test_encoding_is_compact_on_realistic_columns() -> None:
    rng = np.random.default_rng(7)
    n, k = 3600, 50
    rates = rng.gamma(0.3, 0.3, k)
    ticks = rng.poisson(rates * 100, (n, k))
    points = [DataPoint(T0 + i, 1, {f"proc{j}": ticks[i, j] / 100 for j in range(k) if ticks[i, j]}, 1, 1)
              for i in range(n)]
    block = from_points(points, values.DISCRETE)
    size = len(chunkenc.encode(block))
    assert size / nsamples(block) < 1.0, "CPU ticks by process: well under a byte per sample"
    noisy = block._replace(values=np.where(np.isnan(block.values), np.nan, rng.random(block.values.shape)))
    assert len(chunkenc.encode(noisy)) / nsamples(noisy) < 8.5, "random doubles cost about 8 bytes"


def test_corrupt_chunks_are_a_value_error() -> None:
    good = chunkenc.encode(from_points([DataPoint(T0, 1, 1.0, 1, 1)], values.SCALAR))
    flipped = good[:10] + bytes([good[10] ^ 0xFF]) + good[11:]
    import zlib

    wrong = zlib.compress(b"\x81\xa1v\x01")  # a msgpack map {"v": 1} and nothing else
    for bad in (b"", b"garbage", good[:-3], flipped, wrong, zlib.compress(b"\xc1")):
        with pytest.raises(ValueError, match="corrupt chunk"):
            chunkenc.decode(bad)


def test_merge_later_blocks_win_per_slot() -> None:
    a = from_points([DataPoint(T0 + i, 1, {"x": 1.0, "y": 1.0}, 1, 1) for i in range(5)],
                           values.DISCRETE)
    b = from_points([DataPoint(T0 + 2, 1, {"z": 7.0}, 2, 2, True)], values.DISCRETE)
    pts = to_points(merge([a, b], values.DISCRETE), values.DISCRETE, INTERVAL, 1)
    assert [p.value for p in pts] == [{"x": 1.0, "y": 1.0}] * 2 + [{"z": 7.0}] + [{"x": 1.0, "y": 1.0}] * 2
    assert pts[2].revised and pts[2].nsources == 2


def brute(points: list[DataPoint], start: int, step: int, kind: str, shape: str, topk: int) -> dict:
    """series.rollup over each step: the reference the columnar rollup must equal."""
    groups: dict[int, list[DataPoint]] = {}
    for p in points:
        groups.setdefault(start + (p.start_time - start) // step * step, []).append(p)
    return {t: series.rollup(ps, t, step, kind, shape, topk) for t, ps in groups.items()}


@pytest.mark.parametrize("kind", [INTERVAL, POINT])
@pytest.mark.parametrize("seed", range(4))
def test_number_rollups_equal_brute_force(kind: str, seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"key{j:02d}" for j in range(30)]
    points = []
    for i in range(0, 600, rng.choice([1, 1, 3])):
        chosen = rng.sample(keys, rng.randrange(0, 30))
        points.append(DataPoint(T0 + i, 1, {key: float(rng.randrange(0, 1000)) for key in chosen},
                                rng.randrange(1, 4), 3, rng.random() < 0.05))
    block = from_points(points, values.DISCRETE)
    for step, topk in ((60, 10), (60, 50), (7, 5), (600, 3)):
        rolled = rollup(block, values.DISCRETE, T0, step, topk)
        got = {p.start_time: p for p in to_points(rolled, values.DISCRETE, kind, step)}
        want = brute(points, T0, step, kind, values.DISCRETE, topk)
        assert got.keys() == {t for t, p in want.items() if p.value is not None}
        for t, p in got.items():
            assert p == want[t]._replace(value=p.value)
            if kind == INTERVAL:
                assert p.value == want[t].value, (step, topk, t)
            else:  # the average is taken once, after the fold: rounding may differ in the last bit
                assert p.value == pytest.approx(want[t].value, rel=1e-15), (step, topk, t)


def test_scalar_point_metric_rollup_keeps_sums_and_counts() -> None:
    points = [DataPoint(T0 + i, 1, float(i % 7), 1, 1) for i in range(0, 120) if i % 5]
    block = from_points(points, values.SCALAR)
    minutes = rollup(block, values.SCALAR, T0, 60, None)
    assert minutes.counts.tolist() == [48, 48]
    hour = rollup(minutes, values.SCALAR, T0, 3600, None)
    (p,) = to_points(hour, values.SCALAR, POINT, 3600)
    assert p.value == sum(q.value for q in points) * (1.0 / len(points)), "the average of all seconds"


@pytest.mark.parametrize("seed", range(4))
def test_histogram_rollups_equal_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    points = []
    for i in range(0, 240, rng.choice([1, 2])):
        per = {}
        for key in rng.sample(["a", "b", "c", "d", "e", "f"], rng.randrange(0, 6)):
            h = Histogram(rng.choice([3, 3, 3, 1]))
            for _ in range(rng.randrange(0, 40)):
                h.record(rng.choice([0.0, rng.randrange(1, 4096) / 4]))  # dyadic: sums are exact
            per[key] = h
        points.append(DataPoint(T0 + i, 1, per, 1, 1))
    block = from_points(points, values.DISCRETE_HISTOGRAM)
    for step, topk in ((60, 50), (60, 2), (240, 3)):
        rolled = rollup(block, values.DISCRETE_HISTOGRAM, T0, step, topk)
        got = {p.start_time: p.value
               for p in to_points(rolled, values.DISCRETE_HISTOGRAM, INTERVAL, step)}
        want = brute(points, T0, step, INTERVAL, values.DISCRETE_HISTOGRAM, topk)
        for t, v in got.items():
            assert v == want[t].value, (step, topk, t)
    single = [p._replace(value=values.fold_top_k(p.value, 0, values.DISCRETE_HISTOGRAM).get(values.OTHER,
                                                                                              Histogram()))
              for p in points]
    block = from_points(single, values.HISTOGRAM)
    rolled = rollup(block, values.HISTOGRAM, T0, 60, 50)
    got = to_points(rolled, values.HISTOGRAM, INTERVAL, 60)
    want = brute(single, T0, 60, INTERVAL, values.HISTOGRAM, 50)
    assert all(p.value == want[p.start_time].value for p in got)


def test_histogram_rollup_downscales_past_max_buckets() -> None:
    a, b = Histogram(8), Histogram(8)
    for i in range(150):
        a.record(1.0 + i / 1000)
        b.record(1.5 + i / 1000)
    points = [DataPoint(T0, 1, a, 1, 1), DataPoint(T0 + 1, 1, b, 1, 1)]
    block = from_points(points, values.HISTOGRAM)
    (p,) = to_points(rollup(block, values.HISTOGRAM, T0, 60, None), values.HISTOGRAM,
                            INTERVAL, 60)
    assert p.value == a.copy().merge(b)
    assert len(p.value.buckets) <= 160 and p.value.count == 300


def test_fold_keeps_totals_exact() -> None:
    points = [DataPoint(T0 + i, 1, {f"k{j}": float(j + i) for j in range(80)}, 1, 1) for i in range(60)]
    block = from_points(points, values.DISCRETE)
    (p,) = to_points(rollup(block, values.DISCRETE, T0, 60, 50), values.DISCRETE, INTERVAL, 60)
    assert len(p.value) == 51 and values.OTHER in p.value
    assert math.fsum(p.value.values()) == math.fsum(math.fsum(q.value.values()) for q in points)


def test_sums_of_decimals_are_stored_as_decimals_and_come_back_bit_for_bit() -> None:
    """A fleet-wide sum of CPU seconds (0.01 s ticks) is a decimal give or take float noise in the
    last place: stored as a decimal with the noise beside it, it costs what the exact decimals
    cost, not what arbitrary doubles cost, and comes back exactly."""
    rng = np.random.default_rng(7)
    ticks = rng.integers(0, 200, size=(3600, 3))
    exact = ticks.sum(axis=1) / 100
    noisy = (ticks / 100).sum(axis=1)  # the order an aggregator adds hosts in
    assert (noisy != exact).sum() > 100, "float noise is there to keep"
    arbitrary = exact + rng.random(3600) * 1e-6
    size = {}
    for name, column in (("exact", exact), ("noisy", noisy), ("arbitrary", arbitrary)):
        points = [DataPoint(T0 + i, 1, {"user": float(v)}, 1, 1) for i, v in enumerate(column)]
        block = from_points(points, values.DISCRETE)
        data = chunkenc.encode(block)
        same_block(block, chunkenc.decode(data))
        size[name] = len(data)
    assert size["noisy"] < 1.3 * size["exact"] < size["arbitrary"] / 3, size
