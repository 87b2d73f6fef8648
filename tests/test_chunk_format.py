"""The chunk format on disk stays readable: chunks written by earlier versions of the code
(``tests/data/chunks_format1.json``, before histograms kept min and max, and
``tests/data/chunks_format1_range.json``, with them: each made once and committed) decode to
the points they were made from (the older ones with min and max not known), and today's
encoder still writes the same document for them (the older ones: but for the ``range`` key).

The points are built here by plain arithmetic (no random generator whose sequence could change
between Python or numpy versions), so the expected values do not come from the code under test.
Regenerate the newest fixture only for a change of the format (a new ``FORMAT``, or a key added
as ``range`` was; give it a new file), never to make this test pass:
``python tests/test_chunk_format.py --write``.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib
from pathlib import Path

import msgspec
import pytest

from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.metrics import INTERVAL
from fleetscope.model.series import DataPoint
from fleetscope.store import chunkenc, colenc
from fleetscope.store.block import from_points, to_points

FIXTURE = Path(__file__).parent / "data" / "chunks_format1.json"  # before min and max were kept
FIXTURE_RANGE = Path(__file__).parent / "data" / "chunks_format1_range.json"  # the newest
FORMAT_DOC = Path(__file__).parent.parent / "docs" / "format" / "chunks.md"
T0 = 1_700_000_000 - 1_700_000_000 % 86400


def _hist(schema: int, seed: int, n: int) -> Histogram:
    h = Histogram(schema)
    for i in range(n):
        x = ((seed * 7919 + i * 104729) % 10007) / 64  # dyadic: exact sums
        h.record(0.0 if i % 9 == 0 else (x if i % 2 else 1 / (1 + x)), 1.0 if i % 5 else 0.5)
    return h


def cases() -> dict[str, tuple[str, list[DataPoint]]]:
    """Name -> (shape, points) of every chunk in the fixture: together they take each path of
    the column encoder (integers raw and delta, each width, decimals with float noise beside
    them, arbitrary doubles, absent values, sparse histograms of several schemas)."""
    out: dict[str, tuple[str, list[DataPoint]]] = {}
    # A byte counter: big integers, delta-encoded, 4 and 8 bytes wide.
    out["scalar_counter"] = (values.SCALAR, [
        DataPoint(T0 + i, 1, float(3_000_000_000 + i * 123_457 + (i % 7) * 2**33), 3, 3, i % 11 == 0)
        for i in range(120)])
    # CPU seconds summed over hosts: decimals with noise in the last place.
    out["scalar_decimal_sums"] = (values.SCALAR, [
        DataPoint(T0 + i, 1, sum(((i * k) % 37) / 100 for k in (3, 5, 11)), 2, 3) for i in range(0, 200, 2)])
    # Arbitrary doubles, -0.0, subnormals and huge values.
    special = [0.0, -0.0, 5e-324, 1e308, -1e-310, 2.0**53, 0.1 + 0.2, math.pi]
    out["scalar_doubles"] = (values.SCALAR, [
        DataPoint(T0 + i, 1, special[i] if i < len(special) else math.sqrt(i) * math.e, 1, 1)
        for i in range(60)])
    # A breakdown with absent keys, negative numbers and each width.
    keys = ["a", "bb", "ccc", "nginx", "python3", "(other)"]
    out["discrete"] = (values.DISCRETE, [
        DataPoint(T0 + 3 * i, 1,
                  {k: float((i + 1) * (j + 1) * 10 ** (j % 4) * (-1) ** (i % 3 == 0 and j == 2))
                   for j, k in enumerate(keys) if (i + j) % 4},
                  1 + i % 2, 2, False)
        for i in range(90)])
    out["discrete_mixed"] = (values.DISCRETE, [
        DataPoint(T0 + i, 1, {"int": float(i), "dec": i / 1000, "dbl": math.sin(i) * 1e5}, 1, 1)
        for i in range(50)])
    out["histogram"] = (values.HISTOGRAM, [
        DataPoint(T0 + i, 1, _hist((3, 3, 0, -2, 8)[i % 5], i, 5 + i % 40), 1, 1) for i in range(40)])
    out["discrete_histogram"] = (values.DISCRETE_HISTOGRAM, [
        DataPoint(T0 + 2 * i, 1,
                  {k: _hist(3 if j else 1, i * 10 + j, 3 + (i * j) % 25)
                   for j, k in enumerate(("GET /", "POST /api", "GET /static")) if (i + j) % 3},
                  2, 2, i == 5)
        for i in range(30)])
    out["empty"] = (values.SCALAR, [])
    return out


def encoded() -> dict[str, bytes]:
    return {name: chunkenc.encode(from_points(pts, shape)) for name, (shape, pts) in cases().items()}


def _doc(data: bytes):
    return msgspec.msgpack.decode(zlib.decompress(data))


def _packed(v, with_range: bool = True):
    """A value with floats as their bit patterns (-0.0 != 0.0; NaN == NaN); histograms with
    their min and max unless ``with_range`` is false."""
    if isinstance(v, float):
        return struct.pack("<d", v)
    if isinstance(v, dict):
        return {k: _packed(x, with_range) for k, x in v.items()}
    if isinstance(v, Histogram):
        extent = (_packed(v.min), _packed(v.max)) if with_range else ()
        return (v.schema, _packed(v.zero_threshold), _packed(v.zero_count), _packed(v.count),
                _packed(v.sum), {i: _packed(c) for i, c in v.buckets.items()}, *extent)
    return v


def _histograms(value) -> list[Histogram]:
    if isinstance(value, Histogram):
        return [value]
    return [h for h in value.values() if isinstance(h, Histogram)] if isinstance(value, dict) else []


def _load(path: Path) -> dict[str, bytes]:
    return {name: bytes.fromhex(h) for name, h in json.loads(path.read_text()).items()}


@pytest.fixture(scope="module")
def old() -> dict[str, bytes]:
    return _load(FIXTURE)


@pytest.fixture(scope="module")
def ranged() -> dict[str, bytes]:
    return _load(FIXTURE_RANGE)


def test_the_fixtures_hold_every_case(old: dict[str, bytes], ranged: dict[str, bytes]) -> None:
    assert set(old) == set(ranged) == set(cases())


def _same_points(got: list[DataPoint], points: list[DataPoint], with_range: bool) -> None:
    assert [(p.start_time, p.nsources, p.expected, p.revised) for p in got] == \
        [(p.start_time, p.nsources, p.expected, p.revised) for p in points]
    assert [_packed(p.value, with_range) for p in got] == [_packed(p.value, with_range) for p in points]


@pytest.mark.parametrize("name", sorted(cases()))
def test_old_chunks_decode_to_their_points(old: dict[str, bytes], name: str) -> None:
    """Chunks from before min and max were kept: the same points, their range not known."""
    shape, points = cases()[name]
    got = to_points(chunkenc.decode(old[name]), shape, INTERVAL, 1)
    _same_points(got, points, with_range=False)
    for h in (h for p in got for h in _histograms(p.value)):
        assert math.isnan(h.min) and math.isnan(h.max) and h.count > 0


@pytest.mark.parametrize("name", sorted(cases()))
def test_chunks_with_min_and_max_decode_to_their_points(ranged: dict[str, bytes], name: str) -> None:
    shape, points = cases()[name]
    got = to_points(chunkenc.decode(ranged[name]), shape, INTERVAL, 1)
    _same_points(got, points, with_range=True)
    hists = [h for p in got for h in _histograms(p.value)]
    assert all(-math.inf < h.min <= h.max < math.inf for h in hists)  # every one knows them


@pytest.mark.parametrize("name", sorted(cases()))
def test_todays_encoder_writes_the_old_document(old: dict[str, bytes], ranged: dict[str, bytes],
                                                name: str) -> None:
    """Compared before compression, so that another zlib build cannot fail it. The older
    chunks differ only by the ``range`` key, which histogram chunks have now."""
    new = _doc(encoded()[name])
    assert new == _doc(ranged[name])
    has_range = cases()[name][0] in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM)
    assert (chunkenc.KEY_HIST_RANGE in new) == has_range
    new.pop(chunkenc.KEY_HIST_RANGE, None)
    assert new == _doc(old[name])


@pytest.mark.parametrize("module", [chunkenc, colenc])
def test_the_format_document_names_every_key(module) -> None:
    """docs/format/chunks.md has a table row per key constant, with the key the code writes."""
    doc = FORMAT_DOC.read_text()
    keys = {name: v for name, v in vars(module).items() if name.startswith("KEY_")}
    assert len(keys) >= 8
    for name, key in keys.items():
        assert f"| `{key}` | `{name}` |" in doc, name
    assert f"`FORMAT` = {chunkenc.FORMAT}" in doc


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    FIXTURE_RANGE.parent.mkdir(exist_ok=True)
    hexed = {k: v.hex() for k, v in encoded().items()}
    FIXTURE_RANGE.write_text(json.dumps(hexed, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE_RANGE}")
