"""Heatmap matrix, PNG, cell details and lines (fleetscope.api.heatmap)."""

from __future__ import annotations

import colorsys
import io
import json
import math
import random

import numpy as np
import pytest
from PIL import Image

from fleetscope.api.heatmap import (
    HeatmapMatrix,
    average_line,
    cell_details,
    heatmap_matrix,
    key_totals,
    keys_shown,
    percentile_lines,
    render_png,
    tidy_max,
)
from fleetscope.api.heatmap.png import MARK_COLOUR, Mark
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram


def hist(*values: float, weight: float = 1.0, schema: int = 3, zero_threshold: float = 0.0):
    h = Histogram(schema, zero_threshold)
    for v in values:
        h.record(v, weight)
    return h


def bounds(x: float, schema: int = 3) -> tuple[float, float]:
    """(lower, upper) of the bucket holding x."""
    h = hist(x, schema=schema)
    (index,) = h.buckets
    return h.bucket_bounds(index)


def reference(columns, edges):
    """Slow, obvious spread through iter_buckets(): (rows, below, above) per column."""
    y0, y1 = edges[0], edges[-1]
    n = len(edges) - 1
    rows = np.zeros((len(columns), n))
    below = np.zeros(len(columns))
    above = np.zeros(len(columns))
    for ci, col in enumerate(columns):
        hists = [] if col is None else [col] if isinstance(col, Histogram) else col.values()
        for h in hists:
            for lo, hi, c in h.iter_buckets():
                if hi <= lo:  # point mass
                    if hi < y0:
                        below[ci] += c
                    elif hi >= y1:
                        above[ci] += c
                    else:
                        rows[ci, np.searchsorted(edges, hi, side="right") - 1] += c
                    continue
                below[ci] += c * max(0.0, min(hi, y0) - lo) / (hi - lo)
                above[ci] += c * max(0.0, hi - max(lo, y1)) / (hi - lo)
                for j in range(n):
                    overlap = min(hi, edges[j + 1]) - max(lo, edges[j])
                    if overlap > 0:
                        rows[ci, j] += c * overlap / (hi - lo)
    return rows, below, above


def random_columns(seed: int, ncols: int = 12, keys: tuple[str, ...] = ()):
    rng = random.Random(seed)

    def one() -> Histogram:
        h = Histogram(rng.choice([3, 3, 1, 0]), rng.choice([0.0, 0.0, 0.5]))
        for _ in range(rng.randint(0, 60)):
            h.record(rng.choice([0.0, rng.lognormvariate(2.5, 1.2)]), rng.choice([1.0, 2.5]))
        return h

    cols = []
    for _ in range(ncols):
        r = rng.random()
        if r < 0.15:
            cols.append(None)
        elif not keys:
            cols.append(one())
        else:
            cols.append({k: one() for k in keys if rng.random() < 0.8})
    return cols


def hue_at(png: bytes, x: int, y: int) -> tuple[float, float, float]:
    """(hue degrees, saturation, value) of one pixel."""
    r, g, b = Image.open(io.BytesIO(png)).convert("RGB").getpixel((x, y))
    h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    return h * 360, s, v


def hue_distance(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


# --- tidy_max and the automatic ymax -------------------------------------------------


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (0.0, 1.0),
        (-3.0, 1.0),
        (1.0, 1.0),
        (1.01, 2.0),
        (2.2, 2.5),
        (3.0, 5.0),
        (7.5, 10.0),
        (10.0, 10.0),
        (11.0, 20.0),
        (240.0, 250.0),
        (0.0023, 0.0025),
        (0.0025, 0.0025),
        (4.2e-9, 5e-9),
        (123456.0, 200000.0),
    ],
)
def test_tidy_max(x: float, expected: float) -> None:
    assert tidy_max(x) == expected


def test_auto_ymax_is_tidy_and_above_the_data() -> None:
    h = hist(3.0)
    m = heatmap_matrix([h])
    assert 1.25 * h.max_value() <= m.ymax
    assert m.ymax == tidy_max(1.25 * h.max_value()) == 5.0
    rng = random.Random(7)
    for _ in range(50):
        h = hist(*(rng.lognormvariate(rng.uniform(-5, 10), 1) for _ in range(20)))
        ymax = heatmap_matrix([h, None]).ymax
        mantissa = ymax / 10 ** math.floor(math.log10(ymax))
        assert round(mantissa, 9) in (1.0, 2.0, 2.5, 5.0)
        assert ymax >= 1.25 * h.max_value()
        assert ymax < 2.5 * 1.25 * h.max_value()


def test_auto_ymax_uses_the_largest_value_over_every_column_and_key() -> None:
    m = heatmap_matrix([hist(3.0), {"a": hist(1.0), "b": hist(70.0)}, None])
    assert m.ymax == tidy_max(1.25 * hist(70.0).max_value()) == 100.0
    assert m.clipped_above.sum() == 0


def test_auto_ymax_without_data_and_above_ymin() -> None:
    assert heatmap_matrix([None, None]).ymax == 1.0
    assert heatmap_matrix([]).ymax == 1.0
    m = heatmap_matrix([hist(3.0)], ymin=40.0)
    assert m.ymax > 40.0
    assert m.clipped_below[0] == 1.0


# --- spreading ----------------------------------------------------------------------


def test_bucket_inside_one_row_puts_its_whole_count_there() -> None:
    assert 2.0 < bounds(2.5)[0] < bounds(2.5)[1] < 3.0  # (2.38, 2.59]
    m = heatmap_matrix([hist(2.5, weight=5.0)], ymax=10.0, nbuckets=10)
    assert m.counts[0, 2] == 5.0
    assert m.counts.sum() == 5.0
    assert np.count_nonzero(m.counts) == 1


def test_bucket_straddling_rows_is_split_by_overlap() -> None:
    lo, hi = bounds(3.0)  # (2.83, 3.08] on rows 0.1 wide: rows 28, 29, 30
    m = heatmap_matrix([hist(3.0, weight=5.0)], ymax=10.0, nbuckets=100)
    width = hi - lo
    assert m.counts[0, 28] == pytest.approx(5.0 * (2.9 - lo) / width)
    assert m.counts[0, 29] == pytest.approx(5.0 * 0.1 / width)
    assert m.counts[0, 30] == pytest.approx(5.0 * (hi - 3.0) / width)
    assert np.count_nonzero(m.counts) == 3
    assert m.counts.sum() == pytest.approx(5.0)


def test_bucket_covering_many_rows_is_spread_evenly() -> None:
    lo, hi = bounds(1000.0, schema=0)  # (512, 1024]
    m = heatmap_matrix([hist(1000.0, weight=512.0, schema=0)], ymax=1100.0, nbuckets=110)
    inside = m.counts[0, 52:102]  # rows [520, 1020): whole
    assert inside == pytest.approx(np.full(50, 512.0 * 10 / (hi - lo)))
    assert m.counts[0, 51] == pytest.approx(512.0 * (520 - lo) / (hi - lo))
    assert m.counts[0, 102] == pytest.approx(512.0 * (hi - 1020) / (hi - lo))
    assert m.counts[0, 103:].sum() == 0.0
    assert m.counts[0, :51].sum() == 0.0
    assert m.counts.sum() == pytest.approx(512.0)


def test_rows_plus_clipped_equal_the_count() -> None:
    cols = random_columns(1, ncols=40)
    m = heatmap_matrix(cols, ymin=4.0, ymax=30.0, nbuckets=37)
    for ci, col in enumerate(cols):
        total = m.counts[ci].sum() + m.clipped_below[ci] + m.clipped_above[ci]
        assert total == pytest.approx(0.0 if col is None else col.count, rel=1e-12, abs=1e-12)
    assert m.clipped_below.sum() > 0
    assert m.clipped_above.sum() > 0
    assert (m.counts >= 0).all()


def test_zero_bucket() -> None:
    m = heatmap_matrix([hist(0.0, 0.0, -1.0)], ymax=10.0, nbuckets=10)
    assert m.counts[0, 0] == 3.0  # a point mass at 0, in row [0, 1)
    m = heatmap_matrix([hist(0.0, 0.0, -1.0)], ymin=1.0, ymax=10.0)
    assert m.clipped_below[0] == 3.0
    assert m.counts.sum() == 0.0
    # A zero bucket with a threshold is spread over (0, threshold].
    m = heatmap_matrix([hist(0.1, 0.2, zero_threshold=4.0)], ymax=8.0, nbuckets=8)
    assert m.counts[0].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0])


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "axis",
    [
        {"ymax": None, "nbuckets": 100},
        {"ymin": 2.0, "ymax": 45.0, "nbuckets": 17},
        {"ymin": 0.5, "ymax": 500.0, "nbuckets": 60, "log": True},
        {"ymin": 10.0, "ymax": 11.0, "nbuckets": 1},
    ],
)
def test_matches_a_slow_reference(seed: int, axis: dict) -> None:
    cols = random_columns(seed, ncols=15)
    m = heatmap_matrix(cols, **axis)
    rows, below, above = reference(cols, m.edges())
    assert np.allclose(m.counts, rows, rtol=1e-9, atol=1e-9)
    assert np.allclose(m.clipped_below, below, rtol=1e-9, atol=1e-9)
    assert np.allclose(m.clipped_above, above, rtol=1e-9, atol=1e-9)


def test_log_axis() -> None:
    m = heatmap_matrix([hist(3.0, weight=2.0), None], ymin=1.0, ymax=1000.0, nbuckets=30, log=True)
    assert m.log is True
    assert m.edges() == pytest.approx(10 ** (np.arange(31) / 10))
    assert m.counts[0, 4] == 2.0  # (2.83, 3.08] inside [10**0.4, 10**0.5)
    assert m.counts.sum() == 2.0
    with pytest.raises(InputError) as err:
        heatmap_matrix([hist(3.0)], ymin=0.0, log=True)
    assert err.value.field == "ymin"


def test_log_axis_automatic_ymax() -> None:
    m = heatmap_matrix([hist(0.2, 300.0)], ymin=0.1, log=True, nbuckets=40)
    assert m.ymax == 500.0
    assert m.counts.sum() == pytest.approx(2.0)


# --- selection --------------------------------------------------------------------


def keyed_columns() -> list:
    return [
        {"a": hist(1.0, 2.0), "b": hist(2.0, 9.0, 9.5), "c": hist(5.0)},
        None,
        {"b": hist(3.0), "c": hist(0.0, 7.0)},
        hist(4.0, 8.0),  # no breakdown: always part of the rest
        {},
    ]


def test_selected_keys_are_taken_out_of_the_rest() -> None:
    cols = keyed_columns()
    total = heatmap_matrix(cols, ymax=10.0, nbuckets=20)
    m = heatmap_matrix(cols, ymax=10.0, nbuckets=20, selected=["a", "c"])
    assert list(m.keys) == ["a", "c"]
    assert np.allclose(m.counts + m.keys["a"] + m.keys["c"], total.counts, rtol=0, atol=1e-12)
    only_a = heatmap_matrix([{"a": c["a"]} if c and "a" in c else None for c in cols[:1]], ymax=10.0)
    assert m.keys["a"][0].sum() == only_a.counts[0].sum() == 2.0
    assert m.keys["a"][2].sum() == 0.0  # absent in that column
    rest_only = [
        {k: h for k, h in c.items() if k not in ("a", "c")} if isinstance(c, dict) else c
        for c in cols
    ]
    assert np.allclose(m.counts, heatmap_matrix(rest_only, ymax=10.0, nbuckets=20).counts)
    assert m.counts[3].sum() == pytest.approx(2.0)  # the plain histogram stays in the rest


def test_isolate_draws_only_the_selected_keys() -> None:
    cols = keyed_columns()
    sel = heatmap_matrix(cols, ymax=10.0, nbuckets=20, selected=["b"])
    iso = heatmap_matrix(cols, ymax=10.0, nbuckets=20, selected=["b"], isolate=True)
    assert not iso.counts.any()
    assert np.array_equal(iso.keys["b"], sel.keys["b"])
    assert iso.keys["b"].sum() == 4.0
    # The automatic ymax follows what is drawn.
    assert heatmap_matrix(cols, selected=["a"], isolate=True).ymax == 2.5


def test_exclude_draws_everything_but_the_selected_keys() -> None:
    cols = keyed_columns()
    sel = heatmap_matrix(cols, ymax=10.0, nbuckets=20, selected=["b"])
    exc = heatmap_matrix(cols, ymax=10.0, nbuckets=20, selected=["b"], exclude=True)
    assert exc.keys == {}
    assert np.array_equal(exc.counts, sel.counts)
    with pytest.raises(InputError) as err:
        heatmap_matrix(cols, selected=["b"], isolate=True, exclude=True)
    assert err.value.field == "exclude"


def test_rest_is_total_minus_selected_on_random_data() -> None:
    cols = random_columns(5, ncols=30, keys=("x", "y", "z", "w"))
    total = heatmap_matrix(cols, ymax=60.0, nbuckets=50)
    m = heatmap_matrix(cols, ymax=60.0, nbuckets=50, selected=["y", "w", "y"])
    assert list(m.keys) == ["y", "w"]
    assert np.allclose(m.counts + m.keys["y"] + m.keys["w"], total.counts, rtol=1e-12, atol=1e-9)
    whole = m.clipped_below + m.clipped_above
    assert np.allclose(whole, total.clipped_below + total.clipped_above)


def test_gaps() -> None:
    m = heatmap_matrix([None, hist(3.0), None, {}], ymax=10.0, nbuckets=10)
    assert m.present.tolist() == [False, True, False, True]
    assert not m.counts[0].any()
    assert not m.counts[3].any()
    assert m.counts.shape == (4, 10)


# --- JSON -------------------------------------------------------------------------


def test_to_json() -> None:
    m = heatmap_matrix(keyed_columns(), ymax=10.0, nbuckets=20, selected=["a"])
    times = [100, 101, 102, 103, 104]
    doc = json.loads(json.dumps(m.to_json(times)))
    assert doc["ymin"] == 0.0
    assert doc["ymax"] == 10.0
    assert doc["nbuckets"] == 20
    assert doc["log"] is False
    assert doc["times"] == times
    assert doc["present"] == [True, False, True, True, True]
    assert len(doc["counts"]) == 5
    assert all(len(col) == 20 for col in doc["counts"])
    assert set(doc["keys"]) == {"a"}
    assert len(doc["keys"]["a"]) == 5
    assert doc["max"] == pytest.approx(m.max_count(), rel=1e-5)
    assert np.allclose(doc["counts"], m.counts, rtol=1e-5)
    assert all(type(v) is float for col in doc["counts"] for v in col)
    assert len(doc["clipped_below"]) == len(doc["clipped_above"]) == 5
    # Six significant digits: short numbers on the wire.
    assert all(len(repr(v)) <= 13 for col in doc["counts"] for v in col)
    with pytest.raises(InputError) as err:
        m.to_json([1, 2])
    assert err.value.field == "times"


# --- validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"nbuckets": 0}, "nbuckets"),
        ({"nbuckets": 1001}, "nbuckets"),
        ({"nbuckets": 2.5}, "nbuckets"),
        ({"nbuckets": True}, "nbuckets"),
        ({"ymin": 5.0, "ymax": 5.0}, "ymax"),
        ({"ymin": 6.0, "ymax": 5.0}, "ymax"),
        ({"ymin": float("nan")}, "ymin"),
        ({"ymax": float("inf")}, "ymax"),
        ({"ymin": "0"}, "ymin"),
        ({"log": True, "ymin": -1.0}, "ymin"),
        ({"selected": "a"}, "selected"),
        ({"selected": [1]}, "selected"),
    ],
)
def test_bad_matrix_parameters(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        heatmap_matrix([hist(3.0)], **kwargs)
    assert err.value.field == field
    assert err.value.status == 422


def test_bad_columns() -> None:
    for cols in ([3.0], [{"a": 3.0}], ["x"]):
        with pytest.raises(InputError) as err:
            heatmap_matrix(cols)
        assert err.value.field == "columns"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"coloring": "log"}, "coloring"),
        ({"width": 0}, "width"),
        ({"width": 4001}, "width"),
        ({"height": 0}, "height"),
        ({"height": 4001}, "height"),
        ({"height": "10"}, "height"),
    ],
)
def test_bad_render_parameters(kwargs: dict, field: str) -> None:
    m = heatmap_matrix([hist(3.0)])
    with pytest.raises(InputError) as err:
        render_png(m, **kwargs)
    assert err.value.field == field
    assert err.value.status == 422


# --- PNG --------------------------------------------------------------------------


def test_png_size_and_orientation() -> None:
    m = heatmap_matrix([hist(0.5), None, hist(9.5)], ymax=10.0, nbuckets=10)
    png = render_png(m)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (3, 10)
    rgb = image.convert("RGB")
    assert rgb.getpixel((0, 9)) != (255, 255, 255)  # 0.5: bottom row
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((2, 0)) != (255, 255, 255)  # 9.5: top row
    assert all(rgb.getpixel((1, y)) == (255, 255, 255) for y in range(10))  # the gap
    big = Image.open(io.BytesIO(render_png(m, width=300, height=200)))
    assert big.size == (300, 200)
    # Nearest neighbour: column 0 of the data covers x in [0, 100).
    assert big.convert("RGB").getpixel((50, 195)) == rgb.getpixel((0, 9))
    assert Image.open(io.BytesIO(render_png(heatmap_matrix([]), width=5, height=7))).size == (5, 7)


def test_png_hues() -> None:
    col = {"a": hist(2.5), "b": hist(5.5), "c": hist(8.5)}
    m = heatmap_matrix([col, col], ymax=10.0, nbuckets=10, selected=["a", "b"])
    png = render_png(m)
    hue_a, _, val_a = hue_at(png, 0, 7)  # row 2 from the bottom
    hue_b, _, _ = hue_at(png, 0, 4)
    hue_rest, sat_rest, _ = hue_at(png, 1, 1)
    assert hue_distance(hue_a, 21.0) <= 5
    assert hue_distance(hue_b, 112.0) <= 5
    assert hue_distance(hue_rest, 220.0) <= 5
    assert val_a == pytest.approx(0.95, abs=0.01)
    assert sat_rest <= 0.56  # the rest is a blue-grey
    assert Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    # selected_order decides the hues.
    png = render_png(m, selected_order=["b", "a"])
    assert hue_distance(hue_at(png, 0, 7)[0], 112.0) <= 5
    assert hue_distance(hue_at(png, 0, 4)[0], 21.0) <= 5
    # The fifth key wraps round the wheel: 21 + 4 * 91 = 385 -> 25.
    png = render_png(m, selected_order=["p", "q", "r", "s", "a"])
    assert hue_distance(hue_at(png, 0, 7)[0], 25.0) <= 5


def test_png_cell_shows_the_layer_with_most_counts() -> None:
    col = {"a": hist(2.5, 2.5, 2.5), "b": hist(2.5)}
    m = heatmap_matrix([col], ymax=10.0, nbuckets=10, selected=["b"])
    assert hue_distance(hue_at(render_png(m), 0, 7)[0], 220.0) <= 5  # rest 3 > b 1
    m = heatmap_matrix([col], ymax=10.0, nbuckets=10, selected=["a"])
    assert hue_distance(hue_at(render_png(m), 0, 7)[0], 21.0) <= 5


def test_rank_and_linear_coloring() -> None:
    cols = [hist(2.5), hist(2.5, weight=1000.0), hist(2.5), hist(5.5, weight=10.0)]
    m = heatmap_matrix(cols, ymax=10.0, nbuckets=10, selected=[])
    rank = render_png(m)
    linear = render_png(m, coloring="linear")
    assert rank == render_png(m, coloring="rank")
    small_rank, big_rank, mid_rank = (hue_at(rank, x, 7)[1] for x in (0, 1, 3))
    small_lin, big_lin = (hue_at(linear, x, 7)[1] for x in (0, 1))
    mid_rank = hue_at(rank, 3, 4)[1]
    mid_lin = hue_at(linear, 3, 4)[1]
    # The largest cell is the most saturated either way.
    assert big_rank == pytest.approx(big_lin, abs=0.01)
    assert big_rank > mid_rank > small_rank
    # Linear crushes everything next to the 1000; rank keeps the levels apart.
    assert small_lin < small_rank - 0.1
    assert mid_lin < mid_rank - 0.1
    assert small_lin > 0  # non-empty is never white
    assert hue_at(rank, 0, 7)[1] == hue_at(rank, 2, 7)[1]  # equal counts, equal colour


# --- cell details -----------------------------------------------------------------


def test_cell_details_sums() -> None:
    cols = keyed_columns()
    times = [100, 110, 120, 130, 140]
    m = heatmap_matrix(cols, ymax=10.0, nbuckets=10)
    edges = m.edges()
    for row in range(10):
        d = cell_details(cols, times, 100, edges[row], edges[row + 1])
        assert d["time"] == 100
        assert d["present"] is True
        assert d["total"] == pytest.approx(m.counts[0, row], abs=1e-12)
        assert sum(d["keys"].values()) == pytest.approx(d["total"])
    d = cell_details(cols, times, 100, 1.5, 3.5)
    # Column 0: a = {1.0, 2.0}, b = {2.0, 9.0, 9.5}, c = {5.0}; only the 2.0s are inside.
    assert d["keys"] == {"a": 1.0, "b": 1.0}
    assert d["total"] == 2.0
    assert d["ymin"] == 1.5
    assert d["ymax"] == 3.5
    assert list(d["keys"]) == sorted(d["keys"], key=lambda k: -d["keys"][k])
    assert all(v > 0 for v in d["keys"].values())


def test_cell_details_estimates_with_the_spread_rule() -> None:
    lo, hi = bounds(3.0)
    d = cell_details([hist(3.0, weight=4.0)], [50], 50, 2.9, 3.0)
    assert d["total"] == pytest.approx(4.0 * 0.1 / (hi - lo))
    assert d["keys"] == {}


def test_cell_details_picks_the_column() -> None:
    cols = [hist(1.0), None, {"k": hist(2.0)}]
    times = [100, 110, 120]
    assert cell_details(cols, times, 115, 0.0, 10.0)["index"] == 1
    gap = cell_details(cols, times, 115, 0.0, 10.0)
    assert gap["present"] is False
    assert gap["total"] == 0.0
    d = cell_details(cols, times, 129.5, 0.0, 10.0)
    assert (d["index"], d["time"], d["keys"]) == (2, 120, {"k": 1.0})
    for t in (99, 130):
        with pytest.raises(InputError) as err:
            cell_details(cols, times, t, 0.0, 10.0)
        assert err.value.field == "t"
    with pytest.raises(InputError) as err:
        cell_details(cols, times, 100, 5.0, 5.0)
    assert err.value.field == "ymax"
    with pytest.raises(InputError) as err:
        cell_details(cols, times[:2], 100, 0.0, 5.0)
    assert err.value.field == "times"


# --- lines ------------------------------------------------------------------------


def test_percentile_lines_match_histogram_quantile() -> None:
    cols = random_columns(9, ncols=20, keys=("a", "b"))
    lines = percentile_lines(cols, [0.5, 0.99, 0.999])
    assert list(lines) == ["p50", "p99", "p99.9"]
    for ci, col in enumerate(cols):
        if col is None or not col:
            assert lines["p50"][ci] is None
            continue
        merged = Histogram()
        for h in col.values():
            merged.merge(h)
        for q, name in ((0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")):
            expected = merged.quantile(q)
            if math.isnan(expected):
                assert lines[name][ci] is None
            else:
                assert lines[name][ci] == pytest.approx(expected)
    h = hist(1.0, 2.0, 3.0, 40.0)
    assert percentile_lines([h, None], [0.25]) == {"p25": [h.quantile(0.25), None]}
    with pytest.raises(InputError) as err:
        percentile_lines([h], [1.5])
    assert err.value.field == "qs"


def test_average_line() -> None:
    a, b = hist(1.0, 2.0), hist(6.0)
    assert average_line([a, None, {"x": a, "y": b}, Histogram()]) == [1.5, None, 3.0, None]


def test_many_columns() -> None:
    rng = np.random.default_rng(3)
    cols = []
    for _ in range(600):
        h = Histogram()
        for v in rng.lognormal(3.0, 1.0, 50):
            h.record(float(v))
        cols.append(h)
    m = heatmap_matrix(cols)
    assert isinstance(m, HeatmapMatrix)
    assert m.counts.shape == (600, 100)
    assert m.counts.sum() + m.clipped_above.sum() == pytest.approx(600 * 50)
    assert Image.open(io.BytesIO(render_png(m, width=800, height=300))).size == (800, 300)


def test_key_totals_sum_every_column_largest_first() -> None:
    cols = [{"a": hist(1, 2), "b": hist(5)}, None, hist(3), {"b": hist(1, 1, 1), "c": hist(9)}]
    assert key_totals(cols) == [("b", 4.0), ("a", 2.0), ("c", 1.0)]
    assert key_totals([None, hist(1)]) == []


def test_keys_shown_is_what_isolate_and_exclude_draw() -> None:
    col = {"a": hist(1), "b": hist(10), "c": hist(100)}
    assert set(keys_shown(col, ["a", "c"], isolate=True)) == {"a", "c"}
    assert set(keys_shown(col, ["a", "c"], exclude=True)) == {"b"}
    assert keys_shown(col, ["a"]) is col
    assert keys_shown(None, ["a"], isolate=True) is None
    plain = hist(1, 2)
    assert keys_shown(plain, ["a"], isolate=True).count == 0
    assert keys_shown(plain, ["a"], exclude=True) is plain
    # The same counts as the matrix draws: isolate's layers, exclude's rest.
    m = heatmap_matrix([col], ymax=200, nbuckets=4, selected=["a", "c"], isolate=True)
    assert m.keys["a"].sum() + m.keys["c"].sum() == sum(
        h.count for h in keys_shown(col, ["a", "c"], isolate=True).values())
    m = heatmap_matrix([col], ymax=200, nbuckets=4, selected=["a", "c"], exclude=True)
    assert m.counts.sum() == sum(h.count for h in keys_shown(col, ["a", "c"], exclude=True).values())
    with pytest.raises(InputError) as err:
        keys_shown(col, ["a"], isolate=True, exclude=True)
    assert err.value.field == "exclude"


def test_png_marks_annotations_at_their_column() -> None:
    m = heatmap_matrix([hist(1)] * 10, ymax=10, nbuckets=10)
    png = render_png(m, width=200, height=50, marks=[Mark(0.25), Mark(0.5, 0.75, alert=True), Mark(1.5)])
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    blue = (img == MARK_COLOUR).all(axis=2)
    # A dashed line (2 pixels of every 5) and a flag at x = 50; nothing for the mark past the end.
    assert blue[:, 50].sum() >= 50 * 2 // 5 and blue[:, :49].sum() == 0 and blue[:, 60:].sum() == 0
    red = (img == (200, 50, 47)).all(axis=2)
    assert red[:, 100].sum() >= 50 * 2 // 5
    # The window (0.5 to 0.75) shaded faintly: its pixels differ from the same column without marks.
    bare = np.asarray(Image.open(io.BytesIO(render_png(m, width=200, height=50))).convert("RGB"))
    assert (img[:, 120] != bare[:, 120]).any() and (img[:, 160] == bare[:, 160]).all()
