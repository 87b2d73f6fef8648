"""Exponential histograms: bucket layout, merge algebra, quantile error, wire format."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetscope.model.errors import InputError
from fleetscope.model.histogram import (
    DEFAULT_SCHEMA,
    MAX_BUCKETS,
    MAX_SCHEMA,
    MIN_SCHEMA,
    Histogram,
    bucket_index,
    bucket_upper,
)

FAST = settings(max_examples=40, deadline=None)
SCHEMAS = list(range(MIN_SCHEMA, MAX_SCHEMA + 1))

# Observations whose float sums are exact (multiples of 2**-8 below 2**30: any
# sum of a few thousand of them fits in 53 bits), so that histograms built in different orders compare equal,
# ``sum`` included.
dyadic = st.builds(math.ldexp, st.integers(0, 255), st.integers(-8, 15))
small_neg = st.integers(-1000, -1).map(float)
observation = st.one_of(dyadic, dyadic, dyadic, small_neg)
weighted = st.lists(st.tuples(observation, st.integers(1, 3)), max_size=30)
# A geometric run of integers: spans enough buckets to force downscaling.
sweep = st.tuples(
    st.integers(1, 1000), st.integers(0, 200), st.sampled_from([1.01, 1.1, 1.3])
)
schemas = st.integers(MIN_SCHEMA, MAX_SCHEMA)


def observations_of(obs: list, run: tuple[int, int, float]) -> list[tuple[float, int]]:
    start, n, ratio = run
    run = (float(int(start * ratio**j)) for j in range(n))
    return obs + [(x, 1) for x in run if x < 2**30]  # sums stay below 2**45: exact


def build(schema: int, obs: list[tuple[float, int]]) -> Histogram:
    h = Histogram(schema)
    for x, w in obs:
        h.record(x, w)
    return h


@st.composite
def histograms(draw, schema=schemas):
    obs = observations_of(draw(weighted), draw(sweep))
    return build(draw(schema), obs), obs


# -- bucket layout ------------------------------------------------------------


@pytest.mark.parametrize("schema", SCHEMAS)
def test_bounds_are_inclusive_upper(schema):
    h = Histogram(schema)
    n = 2.0 ** schema
    for i in range(-3 * max(1, int(n)), 3 * max(1, int(n)) + 1):
        lower, upper = h.bucket_bounds(i)
        assert lower < upper
        assert bucket_index(upper, schema) == i
        assert bucket_index(math.nextafter(upper, 0.0), schema) == i
        assert bucket_index(math.nextafter(upper, math.inf), schema) == i + 1
        assert bucket_index(math.nextafter(lower, math.inf), schema) == i
        # The mathematical bound, to float precision.
        assert upper == pytest.approx(2.0 ** (i / n), rel=1e-15)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_exact_powers_of_two(schema):
    for e in range(-1074, 1024):
        x = math.ldexp(1.0, e)
        i = bucket_index(x, schema)
        if e < -1022:  # subnormal bounds round; only the index is checked
            continue
        # 2**e == base**(e * 2**schema): an exact upper bound when that is an integer
        if schema >= 0:
            assert i == e << schema
        else:
            assert i == -((-e) >> -schema)  # ceil(e / 2**-schema)
        assert bucket_upper(i, schema) >= x > bucket_upper(i - 1, schema)


def test_powers_of_the_default_base():
    h = Histogram()
    assert h.schema == DEFAULT_SCHEMA == 3
    for j in range(-40, 41):
        h.record(2.0 ** (j / 8))
    assert sorted(h.buckets) == list(range(-40, 41))
    assert set(h.buckets.values()) == {1.0}
    h = Histogram()
    h.record(1.0)
    h.record(math.nextafter(1.0, 2.0))
    h.record(2.0)
    h.record(math.nextafter(2.0, 3.0))
    assert h.buckets == {0: 1.0, 1: 1.0, 8: 1.0, 9: 1.0}


@given(st.floats(min_value=2.0**-1022, max_value=1e300), schemas)
@FAST
def test_value_lies_in_its_bucket(x, schema):
    i = bucket_index(x, schema)
    lower, upper = Histogram(schema).bucket_bounds(i)
    assert lower < x <= upper
    # Agrees with the textbook formula away from float noise at the bounds.
    ref = math.ceil(math.log2(x) * 2.0**schema)
    assert abs(ref - i) <= 1


def test_extreme_values():
    h = Histogram()
    h.record(5e-324)
    h.record(1e308)
    assert h.count == 2 and len(h.buckets) == 2
    lower, upper = h.bucket_bounds(bucket_index(5e-324, 3))
    assert lower <= 5e-324 <= upper  # subnormal bounds are rounded
    assert bucket_upper(10**6, 3) == math.inf


# -- recording ----------------------------------------------------------------


def test_zero_bucket():
    h = Histogram()
    for x in (0.0, -0.0, -5.0, -math.ldexp(1.0, -1074)):
        h.record(x)
    assert h.zero_count == 4 and not h.buckets and h.count == 4 and h.sum == -5.0
    assert list(h.iter_buckets()) == [(0.0, 0.0, 4.0)]
    t = Histogram(zero_threshold=0.5)
    t.record(0.5)
    t.record(0.25)
    t.record(0.51)
    assert t.zero_count == 2 and sum(t.buckets.values()) == 1
    assert next(t.iter_buckets()) == (0.0, 0.5, 2.0)


def test_record_weights_and_rejects():
    h = Histogram()
    h.record(3.0, 2)
    h.record(3.0, 0.5)
    h.record(3.0, 0)  # nothing
    assert h.count == 2.5 and h.sum == 7.5 and list(h.buckets.values()) == [2.5]
    assert all(type(c) is float for c in h.buckets.values())
    for x in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            h.record(x)
    for w in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            h.record(1.0, w)
    assert h.count == 2.5 and h.sum == 7.5


def test_constructor_validates():
    for bad in (MIN_SCHEMA - 1, MAX_SCHEMA + 1, 3.0, True):
        with pytest.raises(ValueError):
            Histogram(bad)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            Histogram(3, bad)
    assert type(Histogram(np.int64(2)).schema) is int  # numpy ints are fine


def test_many_buckets_downscale():
    h = Histogram(MAX_SCHEMA)
    for x in range(1, 5000):
        h.record(x)
    assert len(h.buckets) <= MAX_BUCKETS
    assert h.schema < MAX_SCHEMA
    assert h.count == 4999 and h.sum == 4999 * 5000 / 2
    # The whole float range fits even at the finest schema.
    h = Histogram(MAX_SCHEMA)
    for e in range(-1074, 1024):
        h.record(math.ldexp(1.0, e))
    assert len(h.buckets) <= MAX_BUCKETS and h.count == 2098


# -- downscale --------------------------------------------------------------


def prometheus_target_idx(i: int, d: int) -> int:
    # prometheus/model/histogram: targetIdx
    return ((i - 1) >> d) + 1


@pytest.mark.parametrize("i", range(-9, 10))
def test_downscale_mapping(i):
    h = Histogram(3)
    h.buckets = {i: 1.0}
    h.count = 1.0
    h.downscale(1)
    assert h.buckets == {(i + 1) >> 1: 1.0} == {prometheus_target_idx(i, 1): 1.0}
    assert h.schema == 2
    g = Histogram(3)
    g.buckets = {i: 1.0}
    g.downscale(3)
    assert g.buckets == {prometheus_target_idx(i, 3): 1.0} == {math.ceil(i / 8): 1.0}


def test_downscale_limits():
    h = Histogram(MIN_SCHEMA + 1)
    h.downscale(0)
    h.downscale(1)
    assert h.schema == MIN_SCHEMA
    with pytest.raises(ValueError):
        h.downscale(1)
    with pytest.raises(ValueError):
        h.downscale(-1)


@given(histograms(), st.data())
@FAST
def test_downscale_equals_recording_coarser(hobs, data):
    h, obs = hobs
    by = data.draw(st.integers(0, h.schema - MIN_SCHEMA))
    coarse = build(h.schema - by, obs)
    if coarse.schema == h.schema - by:  # recording did not downscale it further
        h.downscale(by)
        assert h == coarse


@given(histograms())
@FAST
def test_downscale_keeps_count_and_sum(hobs):
    h, obs = hobs
    assert len(h.buckets) <= MAX_BUCKETS
    assert h.count == sum(w for _, w in obs)
    assert h.sum == sum(x * w for x, w in obs)
    assert h.zero_count + sum(h.buckets.values()) == h.count
    while h.schema > MIN_SCHEMA:
        h.downscale(1)
        assert h.count == sum(w for _, w in obs) == h.zero_count + sum(h.buckets.values())
        assert h.sum == sum(x * w for x, w in obs)
        assert len(h.buckets) <= MAX_BUCKETS


# -- merge -------------------------------------------------------------------


@given(histograms(), histograms())
@FAST
def test_merge_commutes(a, b):
    (ha, _), (hb, _) = a, b
    assert ha.copy().merge(hb) == hb.copy().merge(ha)


@given(histograms(), histograms(), histograms())
@FAST
def test_merge_associates(a, b, c):
    (ha, _), (hb, _), (hc, _) = a, b, c
    left = ha.copy().merge(hb).merge(hc)
    right = ha.copy().merge(hb.copy().merge(hc))
    assert left == right
    assert len(left.buckets) <= MAX_BUCKETS


@given(histograms(), histograms(), histograms())
@FAST
def test_merge_equals_recording_everything(a, b, c):
    (ha, oa), (hb, ob), (hc, oc) = a, b, c
    merged = ha.copy().merge(hb).merge(hc)
    with_buckets = [h.schema for h in (ha, hb, hc) if h.buckets]
    schema = min(with_buckets or [ha.schema, hb.schema, hc.schema])
    one = build(schema, oa + ob + oc)
    assert merged == one  # even the schema: both are the finest that fits
    one.downscale(one.schema - MIN_SCHEMA)
    merged.downscale(merged.schema - MIN_SCHEMA)
    assert merged == one


@given(histograms(), histograms())
@FAST
def test_merge_leaves_other_alone(a, b):
    (ha, _), (hb, _) = a, b
    before = hb.copy()
    ha.merge(hb)
    assert hb == before


@given(histograms(), schemas)
@FAST
def test_empty_is_identity(hobs, schema):
    h, _ = hobs
    if h.buckets:
        assert Histogram(schema).merge(h) == h
        assert h.copy().merge(Histogram(schema)) == h
        zero_only = Histogram(schema)
        zero_only.record(0.0)
        assert zero_only.merge(h).schema == h.schema
    else:  # no resolution on either side: the finer one is not kept
        assert Histogram(schema).merge(h).schema == min(schema, h.schema)


def test_merge_with_itself():
    h = build(3, [(1.0, 1), (3.0, 2), (0.0, 1)])
    h.merge(h)
    assert h == build(3, [(1.0, 2), (3.0, 4), (0.0, 2)])


def test_merge_float_sums_are_close():
    # Arbitrary floats: counts and buckets exact, the float sum to rounding.
    xs = [0.1, 0.2, 0.3, 1e-3, 7.7, 123.456]
    a, b = Histogram(), Histogram()
    for x in xs[:3]:
        a.record(x)
    for x in xs[3:]:
        b.record(x)
    one = build(3, [(x, 1) for x in xs])
    m = a.copy().merge(b)
    assert m.buckets == one.buckets and m.count == one.count
    assert m.sum == pytest.approx(one.sum, rel=1e-15)


def test_merge_different_zero_thresholds():
    a = Histogram(0, zero_threshold=0.0)
    for x in (0.3, 0.75, 1.5, 3.0):
        a.record(x)
    b = Histogram(0, zero_threshold=0.6)
    b.record(0.5)
    b.record(2.0)
    a.merge(b)
    # 0.75 lives in (0.5, 1]: that bucket reaches below 0.6, so the zero bucket
    # grows to 1.0 and takes it.
    assert a.zero_threshold == 1.0
    assert a.zero_count == 3 and a.count == 6
    assert a.buckets == {1: 2.0, 2: 1.0}


# -- quantiles ------------------------------------------------------------------

positive = st.lists(
    st.tuples(st.floats(min_value=1e-6, max_value=1e9), st.integers(1, 4)), min_size=1, max_size=60
)
quantiles = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5)


def nearest_rank(obs, q):
    xs = sorted(x for x, w in obs for _ in range(w))
    k = max(1, math.ceil(q * len(xs)))
    return xs[k - 1]


@given(positive, schemas, quantiles)
@FAST
def test_quantile_relative_error(obs, schema, qs):
    h = build(schema, obs)
    base = 2.0 ** (2.0**-h.schema)
    for q in qs:
        true = nearest_rank(obs, q)
        est = h.quantile(q)
        lower, upper = h.quantile_bounds(q)
        assert lower < true <= upper
        assert lower <= est <= upper
        # Interpolated estimate: below base - 1 (9.05 % at schema 3).
        assert abs(est - true) / true < (base - 1) * (1 + 1e-12)
        # Geometric midpoint: below sqrt(base) - 1 (4.43 % at schema 3).
        mid = math.sqrt(lower * upper)
        assert abs(mid - true) / true < (math.sqrt(base) - 1) * (1 + 1e-12)


def test_quantile_bound_at_default_schema():
    # Many known values over five orders of magnitude (about 133 buckets: no
    # downscaling), recorded at the default schema; every quantile the histogram
    # gives is compared with the exact nearest-rank quantile numpy computes from
    # the raw values.
    rng = np.random.default_rng(20240612)
    values = 10.0 ** rng.uniform(-2.0, 3.0, 20_000)
    h = Histogram()
    for x in values:
        h.record(float(x))
    assert h.schema == DEFAULT_SCHEMA and len(h.buckets) > 120
    assert h.count == len(values)
    base = 2.0 ** (2.0**-DEFAULT_SCHEMA)
    # The documented bounds: 9.05 % for the estimate, under 5 % (4.43 %) for the
    # geometric midpoint of the bucket.
    assert base - 1 == pytest.approx(0.0905, abs=1e-4)
    assert math.sqrt(base) - 1 < 0.05
    qs = np.linspace(0.0, 1.0, 2001)
    exact = np.quantile(values, qs, method="inverted_cdf")  # nearest rank
    est = np.array([h.quantile(float(q)) for q in qs])
    bounds = np.array([h.quantile_bounds(float(q)) for q in qs])
    assert np.all(bounds[:, 0] < exact) and np.all(exact <= bounds[:, 1])
    err = np.abs(est - exact) / exact
    assert err.max() < (base - 1) * (1 + 1e-12), qs[err.argmax()]
    mid = np.sqrt(bounds[:, 0] * bounds[:, 1])
    mid_err = np.abs(mid - exact) / exact
    assert mid_err.max() < (math.sqrt(base) - 1) * (1 + 1e-12), qs[mid_err.argmax()]
    # With this many values per bucket the interpolation does much better than
    # the bound: a histogram that returned bucket edges would fail this.
    assert np.median(err) < 0.01


@given(histograms(), quantiles)
@FAST
def test_quantile_monotone(hobs, qs):
    h, _ = hobs
    qs = sorted(qs)
    est = [h.quantile(q) for q in qs]
    assert est == sorted(est)


def test_quantile_interpolation():
    h = Histogram(0)
    h.record(3.0, 4)  # bucket (2, 4]
    assert h.quantile(0.0) == h.quantile(0.5) == h.quantile(1.0) == 3.0  # min == max == 3
    h.forget_range()  # the bucket alone, as from a source without min and max
    assert h.quantile(0.0) == 2.0
    assert h.quantile(1.0) == 4.0
    assert h.quantile(0.5) == pytest.approx(2 * math.sqrt(2))  # exponential, not 3.0
    z = Histogram(zero_threshold=1.0)
    z.record(0.5, 2)
    z.forget_range()
    assert z.quantile(0.5) == 0.5  # linear in the zero bucket


def test_quantile_edges():
    h = Histogram()
    assert math.isnan(h.quantile(0.5)) and math.isnan(h.mean())
    assert all(map(math.isnan, h.quantile_bounds(0.5)))
    for q in (-0.1, 1.1, math.nan):
        with pytest.raises(InputError):
            h.quantile(q)
    h.record(0.0)
    assert h.quantile(0.99) == 0.0
    h.record(10.0)
    assert h.quantile(0.5) == 0.0 and h.quantile(0.51) > 9.0


def test_mean_and_max_value():
    h = Histogram()
    assert h.max_value() == 0.0
    h.record(0.0)
    assert h.max_value() == 0.0
    h.record(3.0, 3)
    assert h.mean() == 9.0 / 4
    assert h.max_value() == 3.0  # the largest value recorded
    h.forget_range()
    assert h.max_value() == h.bucket_bounds(bucket_index(3.0, 3))[1] > 3.0  # its bucket's top
    t = Histogram(zero_threshold=0.25)
    t.record(0.1)
    assert t.max_value() == 0.1
    assert t.forget_range().max_value() == 0.25


def test_iter_buckets_order():
    h = build(1, [(5.0, 1), (0.0, 2), (0.01, 1), (100.0, 3)])
    got = list(h.iter_buckets())
    assert got[0] == (0.0, 0.0, 2.0)
    uppers = [u for _, u, _ in got]
    assert uppers == sorted(uppers)
    assert sum(c for _, _, c in got) == h.count
    for lower, upper, _ in got[1:]:
        assert upper / lower == pytest.approx(math.sqrt(2))


# -- copy, scale, equality ----------------------------------------------------------


def test_copy_is_independent():
    h = build(3, [(1.0, 1), (2.0, 1)])
    c = h.copy()
    c.record(2.0)
    assert h.count == 2 and h.buckets[8] == 1.0 and c != h


def test_scale():
    h = build(3, [(1.0, 1), (2.0, 3), (0.0, 2)])
    s = h.scale(0.5)
    assert s.count == 3.0 and s.sum == 3.5 and s.zero_count == 1.0
    assert s.buckets == {0: 0.5, 8: 1.5}
    assert h.count == 6  # unchanged
    assert h.scale(0.0).buckets == {}
    with pytest.raises(ValueError):
        h.scale(-1.0)


def test_equality():
    a = build(3, [(1.0, 1)])
    assert a == build(3, [(1.0, 1)])
    assert a != build(2, [(1.0, 1)])
    assert a != build(3, [(1.0, 2)])
    assert a != Histogram(3, 0.5).merge(a)
    assert a != {"schema": 3}
    assert (a == 1) is False


# -- wire format ---------------------------------------------------------------


@given(histograms(), st.booleans())
@FAST
def test_json_round_trip(hobs, scaled):
    h, _ = hobs
    if scaled:
        h = h.scale(1 / 3)  # fractional counts survive too
    wire = json.loads(json.dumps(h.to_json()))
    assert Histogram.from_json(wire) == h
    assert Histogram.from_json(h.to_json()) == h


def test_to_json_shape():
    h = build(3, [(1.0, 1), (0.5, 2), (0.0, 1)])
    assert h.to_json() == {
        "schema": 3,
        "zero_threshold": 0.0,
        "zero_count": 1.0,
        "count": 4.0,
        "sum": 2.0,
        "min": 0.0,
        "max": 1.0,
        "buckets": {"-8": 2.0, "0": 1.0},
    }


def valid() -> dict:
    return build(3, [(1.0, 1), (0.5, 2)]).to_json()


def with_(key, value):
    d = valid()
    d[key] = value
    return d


def with_bucket(key, value):
    d = valid()
    d["buckets"] = {**d["buckets"], key: value}
    return d


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ([], "v"),
        (None, "v"),
        ({k: v for k, v in valid().items() if k != "sum"}, "v.sum"),
        ({**valid(), "mean": 0.0}, "v"),
        (with_("min", math.nan), "v.min"),
        (with_("min", "0"), "v.min"),
        (with_("min", 2.0), "v.min"),  # above max
        (with_("max", -math.inf), "v.max"),
        (with_("max", 10**400), "v.max"),
        (with_("max", None), "v.max"),
        (with_("schema", 9), "v.schema"),
        (with_("schema", -5), "v.schema"),
        (with_("schema", 3.0), "v.schema"),
        (with_("schema", True), "v.schema"),
        (with_("schema", "3"), "v.schema"),
        (with_("count", math.nan), "v.count"),
        (with_("count", -3.0), "v.count"),
        (with_("count", 4.0), "v.count"),  # does not match the buckets
        (with_("count", "3"), "v.count"),
        (with_("sum", math.inf), "v.sum"),
        (with_("sum", 10**400), "v.sum"),
        (with_("zero_count", -1.0), "v.zero_count"),
        (with_("zero_threshold", -0.1), "v.zero_threshold"),
        (with_("zero_threshold", None), "v.zero_threshold"),
        (with_("buckets", [1, 2]), "v.buckets"),
        (with_bucket("x", 1.0), "v.buckets.x"),
        (with_bucket("1.5", 1.0), "v.buckets.1.5"),
        (with_bucket("01", 1.0), "v.buckets.01"),
        (with_bucket(" 1", 1.0), "v.buckets. 1"),
        (with_bucket("-0", 1.0), "v.buckets.-0"),
        (with_bucket("٣", 1.0), "v.buckets.٣"),
        (with_bucket("99999999", 1.0), "v.buckets.99999999"),
        (with_bucket(True, 1.0), "v.buckets.True"),
        (with_bucket(None, 1.0), "v.buckets.None"),
        (with_bucket("5", -1.0), "v.buckets.5"),
        (with_bucket("5", math.nan), "v.buckets.5"),
        (with_bucket("5", "1"), "v.buckets.5"),
        (with_bucket(0, 1.0), "v.buckets.0"),  # duplicate of "0"
    ],
)
def test_from_json_rejects(obj, field):
    with pytest.raises(InputError) as err:
        Histogram.from_json(obj, "v")
    assert err.value.field == field


def test_from_json_normalises():
    d = valid()
    d["buckets"] = {**d["buckets"], "5": 0}
    d["count"] = 3
    h = Histogram.from_json(d)
    assert h == build(3, [(1.0, 1), (0.5, 2)])
    assert 5 not in h.buckets
    d = build(8, [(float(x), 1) for x in range(1, 200)]).to_json()
    assert len(d["buckets"]) <= MAX_BUCKETS
    d["buckets"] = {str(i): 1.0 for i in range(170)}
    d["count"], d["zero_count"] = 170, 0
    h = Histogram.from_json(d)
    assert h.schema < 8 and len(h.buckets) <= MAX_BUCKETS and h.count == 170


json_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(["0", "-1", "3", "1e3", "-0", "inf"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5) | st.sampled_from(list(valid())), inner, max_size=6),
    max_leaves=20,
)


@given(json_junk)
@FAST
def test_from_json_junk_raises_only_input_error(obj):
    with contextlib.suppress(InputError):
        Histogram.from_json(obj)


@given(st.sampled_from(sorted(valid())), json_junk)
@FAST
def test_from_json_one_bad_field(key, junk):
    d = with_(key, junk)
    try:
        h = Histogram.from_json(d)
    except InputError as err:
        # count must agree with the buckets, min with max: either of a pair may be named
        pair = {"min": "max", "max": "min"}.get(key, "count")
        assert err.field.startswith(f"value.{key}") or err.field == f"value.{pair}"
    else:
        assert h.to_json() == Histogram.from_json(h.to_json()).to_json()


@given(st.sampled_from(sorted(valid())), json_junk, st.sampled_from(["0", "-8", "5", "-0", "07", 3]),
       st.sampled_from([0, 1, 2.5, -1.0, math.inf, math.nan, True, 10**400]))
@FAST
def test_the_fast_decoder_accepts_only_what_the_checked_one_accepts_and_agrees(key, junk, index, count):
    """The bulk-checked decoder (the aggregators' hot path) either declines or builds exactly the
    histogram the field-by-field decoder builds; it never accepts what that one rejects."""
    for obj in (with_(key, junk), with_bucket(index, count), valid()):
        fast = Histogram._from_json_fast(obj)
        if fast is None:
            continue
        assert fast == Histogram._from_json_checked(obj, "v"), obj
