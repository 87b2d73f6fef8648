"""Values of the four shapes: merge, scale, top-K folding, totals, wire format."""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetscope.model import values as V
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram

FAST = settings(max_examples=50, deadline=None)


def hist(*xs: float, schema: int = 3) -> Histogram:
    h = Histogram(schema)
    for x in xs:
        h.record(x)
    return h


keys = st.sampled_from(["web1", "web2", "db", "cache", "a", "b", V.OTHER, ""]) | st.text(max_size=4)
ints = st.integers(-(10**6), 10**6).map(float)  # integer floats: sums are exact
histo = st.builds(
    lambda xs, schema: hist(*xs, schema=schema),
    st.lists(st.integers(0, 10**5).map(float), max_size=8),
    st.integers(0, 8),
)
by_shape = {
    V.SCALAR: ints,
    V.DISCRETE: st.dictionaries(keys, ints, max_size=8),
    V.HISTOGRAM: histo,
    V.DISCRETE_HISTOGRAM: st.dictionaries(keys, histo, max_size=5),
}


@st.composite
def shaped(draw, n=1):
    shape = draw(st.sampled_from(V.SHAPES))
    return (shape, *(draw(by_shape[shape]) for _ in range(n)))


def copy_of(v, shape):
    return V.decode(V.encode(v, shape), shape)


def test_shape_for():
    assert V.shape_for(False, False) == V.SCALAR
    assert V.shape_for(True, False) == V.DISCRETE
    assert V.shape_for(False, True) == V.HISTOGRAM
    assert V.shape_for(True, True) == V.DISCRETE_HISTOGRAM


def test_empty():
    assert V.empty(V.SCALAR) == 0.0
    assert V.empty(V.DISCRETE) == {} and V.empty(V.DISCRETE_HISTOGRAM) == {}
    assert V.empty(V.HISTOGRAM) == Histogram()
    assert V.empty(V.DISCRETE) is not V.empty(V.DISCRETE)
    with pytest.raises(ValueError):
        V.empty("nope")


# -- merge ----------------------------------------------------------------------


def test_merge_into_each_shape():
    assert V.merge_into(1.5, 2.0, V.SCALAR) == 3.5
    acc = {"a": 1.0}
    assert V.merge_into(acc, {"a": 2.0, "b": 3.0}, V.DISCRETE) is acc
    assert acc == {"a": 3.0, "b": 3.0}
    h = hist(1.0)
    assert V.merge_into(h, hist(2.0), V.HISTOGRAM) is h and h == hist(1.0, 2.0)
    acc = {"a": hist(1.0)}
    V.merge_into(acc, {"a": hist(2.0), "b": hist(3.0)}, V.DISCRETE_HISTOGRAM)
    assert acc == {"a": hist(1.0, 2.0), "b": hist(3.0)}
    with pytest.raises(ValueError):
        V.merge_into(1.0, 1.0, "nope")


def test_merge_into_never_aliases_v():
    v = {"a": hist(1.0)}
    acc = V.merge_into({}, v, V.DISCRETE_HISTOGRAM)
    assert acc["a"] is not v["a"]
    V.merge_into(acc, {"a": hist(5.0)}, V.DISCRETE_HISTOGRAM)
    assert v == {"a": hist(1.0)}


@given(shaped(n=2))
@FAST
def test_merge_into_leaves_v_alone(case):
    shape, a, b = case
    before = copy_of(b, shape)
    acc = V.merge_into(a, b, shape)
    assert b == before
    V.merge_into(acc, copy_of(b, shape), shape)  # mutating acc again: b still intact
    assert b == before


@given(shaped(n=3))
@FAST
def test_merge_commutes_and_associates(case):
    shape, a, b, c = case

    def add(x, y):
        return V.merge_into(copy_of(x, shape), y, shape)

    assert add(a, b) == add(b, a)
    assert add(add(a, b), c) == add(a, add(b, c))
    assert V.total(add(a, b), shape) == V.total(a, shape) + V.total(b, shape)
    if shape != V.HISTOGRAM or a.buckets:  # a bucketless histogram takes the coarser schema
        assert add(V.empty(shape), a) == a


# -- scale ------------------------------------------------------------------------


def test_scale():
    assert V.scale(3.0, 0.5, V.SCALAR) == 1.5
    d = {"a": 2.0}
    assert V.scale(d, 0.5, V.DISCRETE) == {"a": 1.0} and d == {"a": 2.0}
    h = hist(1.0, 1.0)
    s = V.scale(h, 0.5, V.HISTOGRAM)
    assert s.count == 1.0 and h.count == 2.0
    dh = {"a": h}
    s = V.scale(dh, 2.0, V.DISCRETE_HISTOGRAM)
    assert s["a"].count == 4.0 and s["a"] is not h and h.count == 2.0


@given(shaped())
@FAST
def test_scale_total(case):
    shape, v = case
    before = copy_of(v, shape)
    assert V.total(V.scale(v, 0.25, shape), shape) == V.total(v, shape) * 0.25
    assert v == before


# -- fold_top_k -----------------------------------------------------------------------


def test_fold_top_k_discrete():
    v = {"a": 5.0, "b": 1.0, "c": 3.0, "d": 3.0, "e": 2.0}
    assert V.fold_top_k(v, 2, V.DISCRETE) == {"a": 5.0, "c": 3.0, V.OTHER: 6.0}  # c beats d
    assert V.fold_top_k(v, 0, V.DISCRETE) == {V.OTHER: 14.0}
    assert V.fold_top_k(v, 5, V.DISCRETE) == v
    assert V.fold_top_k(v, 5, V.DISCRETE) is not v
    assert v == {"a": 5.0, "b": 1.0, "c": 3.0, "d": 3.0, "e": 2.0}
    with pytest.raises(ValueError):
        V.fold_top_k(v, -1, V.DISCRETE)


def test_fold_top_k_existing_other_is_a_key():
    # Ranked like any key: kept, and the rest added to it...
    v = {V.OTHER: 10.0, "a": 5.0, "b": 1.0, "c": 2.0}
    assert V.fold_top_k(v, 2, V.DISCRETE) == {V.OTHER: 13.0, "a": 5.0}
    # ...or folded into the new OTHER with the rest.
    v = {V.OTHER: 1.0, "a": 5.0, "b": 4.0, "c": 2.0}
    assert V.fold_top_k(v, 2, V.DISCRETE) == {"a": 5.0, "b": 4.0, V.OTHER: 3.0}


def test_fold_top_k_histograms():
    v = {"a": hist(1, 2, 3), "b": hist(100), "c": hist(7, 8), "d": hist(0.5, 9)}
    out = V.fold_top_k(v, 2, V.DISCRETE_HISTOGRAM)
    assert set(out) == {"a", "c", V.OTHER}  # c and d tie on count: c wins by name
    assert out[V.OTHER] == hist(100, 0.5, 9)
    assert out["a"] == v["a"] and out["a"] is not v["a"]
    assert v["b"] == hist(100) and v["d"] == hist(0.5, 9)
    out[V.OTHER].record(1.0)
    assert v["b"] == hist(100)


def test_fold_top_k_other_shapes_unchanged():
    assert V.fold_top_k(3.0, 1, V.SCALAR) == 3.0
    h = hist(1.0)
    assert V.fold_top_k(h, 1, V.HISTOGRAM) is h


@given(st.sampled_from([V.DISCRETE, V.DISCRETE_HISTOGRAM]), st.data(), st.integers(0, 6))
@FAST
def test_fold_top_k_properties(shape, data, k):
    v = data.draw(by_shape[shape])
    before = copy_of(v, shape)
    out = V.fold_top_k(v, k, shape)
    assert v == before
    assert V.total(out, shape) == V.total(v, shape)  # exact: integer data
    assert len(out) <= k + 1
    if len(v) <= k:
        assert out == v
        return
    assert V.OTHER in out

    def weight(x):
        return x.count if shape == V.DISCRETE_HISTOGRAM else x

    top = sorted(v, key=lambda key: (-weight(v[key]), key))[:k]
    assert set(out) == {*top, V.OTHER}
    for key in top:
        if key != V.OTHER:
            assert out[key] == v[key]
    # Deterministic whatever the dict order.
    assert V.fold_top_k(dict(reversed(list(v.items()))), k, shape) == out


@pytest.mark.parametrize("shape", [V.DISCRETE, V.DISCRETE_HISTOGRAM])
def test_fold_top_k_of_many_keys(shape):
    # Far more keys than kept (the agent's 100,000-value breakdowns), with ties on every value.
    n, k = 5000, 50
    counts = {f"k{i:05d}": (i * 7919) % 97 + 1 for i in range(n)}
    v = counts if shape == V.DISCRETE else {key: hist(*[1.0] * c) for key, c in counts.items()}
    out = V.fold_top_k({key: v[key] for key in reversed(list(v))}, k, shape)
    top = sorted(counts, key=lambda key: (-counts[key], key))[:k]
    assert set(out) == {*top, V.OTHER}
    assert V.total(out, shape) == sum(counts.values())
    if shape == V.DISCRETE_HISTOGRAM:
        assert out[V.OTHER].count == sum(counts[key] for key in counts if key not in top)


# -- total -------------------------------------------------------------------------------


def test_total():
    assert V.total(2.5, V.SCALAR) == 2.5
    assert V.total({"a": 1.0, "b": 2.0}, V.DISCRETE) == 3.0
    assert V.total({}, V.DISCRETE) == 0.0
    assert V.total(hist(1.0, 0.0, -3.0), V.HISTOGRAM) == 3.0
    assert V.total({"a": hist(1.0), "b": hist(2.0, 3.0)}, V.DISCRETE_HISTOGRAM) == 3.0


# -- encode / decode ---------------------------------------------------------------------


@given(shaped())
@FAST
def test_round_trip(case):
    shape, v = case
    wire = json.loads(json.dumps(V.encode(v, shape)))
    assert V.decode(wire, shape) == v


def test_encode_shapes():
    assert V.encode(3, V.SCALAR) == 3.0
    assert V.encode({"a": 1}, V.DISCRETE) == {"a": 1.0}
    assert V.encode(hist(1.0), V.HISTOGRAM) == hist(1.0).to_json()
    assert V.encode({"a": hist(1.0)}, V.DISCRETE_HISTOGRAM) == {"a": hist(1.0).to_json()}


NEG_HIST = {**hist(1.0).to_json(), "zero_count": -1.0}


REJECTED = [
        ("1", V.SCALAR, "v"),
        (True, V.SCALAR, "v"),
        (None, V.SCALAR, "v"),
        (math.nan, V.SCALAR, "v"),
        (math.inf, V.SCALAR, "v"),
        (10**400, V.SCALAR, "v"),
        ([1.0], V.DISCRETE, "v"),
        ({1: 1.0}, V.DISCRETE, "v"),
        ({"a": math.nan}, V.DISCRETE, "v.a"),
        ({"a": "1"}, V.DISCRETE, "v.a"),
        ({"a": False}, V.DISCRETE, "v.a"),
        (1.0, V.HISTOGRAM, "v"),
        (NEG_HIST, V.HISTOGRAM, "v.zero_count"),
        ({"a": NEG_HIST}, V.DISCRETE_HISTOGRAM, "v.a.zero_count"),
        ({"a": 1.0}, V.DISCRETE_HISTOGRAM, "v.a"),
        ({None: hist(1.0).to_json()}, V.DISCRETE_HISTOGRAM, "v"),
]


@pytest.mark.parametrize(("obj", "shape", "field"), REJECTED)
def test_decode_rejects(obj, shape, field):
    with pytest.raises(InputError) as err:
        V.decode(obj, shape, "v")
    assert err.value.field == field


def test_decode_unknown_shape():
    with pytest.raises(ValueError):
        V.decode(1.0, "nope")


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=5),
    max_leaves=15,
)


@given(st.sampled_from(V.SHAPES), junk)
@FAST
def test_decode_junk_raises_only_input_error(shape, obj):
    try:
        v = V.decode(obj, shape)
    except InputError:
        return
    assert V.decode(json.loads(json.dumps(V.encode(v, shape))), shape) == v


# -- the bus: msgpack decoded with msgspec's type checks ---------------------------------------


def _packed(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)


@given(shaped())
@FAST
def test_decode_msgpack_gives_what_decode_gives(case):
    shape, v = case
    assert V.decode_msgpack(_packed(V.encode(v, shape)), shape) == v


@pytest.mark.parametrize(("obj", "shape", "field"), [c for c in REJECTED if c[0] != 10**400])
def test_decode_msgpack_rejects_naming_the_field(obj, shape, field):
    with pytest.raises(InputError) as err:
        V.decode_msgpack(_packed(obj), shape, "v")
    assert err.value.field == field


@given(st.sampled_from(V.SHAPES), junk)
@FAST
def test_decode_msgpack_of_junk_agrees_with_decode(shape, obj):
    """The typed path accepts exactly what the checked path accepts, and builds the same value."""
    try:
        data = _packed(obj)
    except OverflowError:  # ints beyond 64 bits do not travel in msgpack
        return
    try:
        want = V.decode(obj, shape)
    except InputError:
        with pytest.raises(InputError):
            V.decode_msgpack(data, shape)
        return
    assert V.decode_msgpack(data, shape) == want
