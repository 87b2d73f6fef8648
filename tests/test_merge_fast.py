"""Issue 15's cheaper merging: the aggregators' fast path (histograms built straight from msgspec's
wire structs, the leaner ``Histogram.merge``, the window's cached expected hosts) gives exactly
what the reference paths give, and refuses what they refuse without changing anything.

The references are independent of the fast path: :func:`values.decode` of the generic msgpack
decoding (``Histogram.from_json``), a verbatim copy of ``Histogram.merge`` and of
``Window._expected_bits`` as they were before, and histograms recorded from every observation.
"""

from __future__ import annotations

import math
import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.aggregator.window import STALE_AFTER, Window
from fleetscope.bus import messages as m
from fleetscope.bus.memory import MemoryBus
from fleetscope.model import values as V
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import _INDEX_RANGE, MAX_BUCKETS, MAX_SCHEMA, MIN_SCHEMA, Histogram
from fleetscope.model.instrumentation import Instrumentation

T0 = 1_700_000_000
SETTINGS = settings(max_examples=150, deadline=None)


def exact(h: Histogram) -> tuple:
    """Every field of ``h``, ``min`` and ``max`` too (``==`` leaves them out), as reprs so that a
    NaN equals a NaN and -0.0 differs from 0.0."""
    return (h.schema, repr(h.zero_threshold), repr(h.zero_count), repr(h.count), repr(h.sum),
            repr(h.min), repr(h.max), sorted((i, repr(c)) for i, c in h.buckets.items()))


def exact_value(v: V.Value, shape: str) -> object:
    if shape == V.HISTOGRAM:
        return exact(v)
    if shape == V.DISCRETE_HISTOGRAM:
        return sorted((key, exact(h)) for key, h in v.items())
    return repr(v) if shape == V.SCALAR else sorted((key, repr(x)) for key, x in v.items())


def reference_decode(data: bytes, shape: str) -> V.Value:
    """The checked path: msgpack decoded to builtins, then :func:`values.decode`."""
    return V.decode(msgspec.msgpack.decode(data), shape)


def reference_merge(self: Histogram, other: Histogram) -> Histogram:
    """``Histogram.merge`` before issue 15, verbatim."""
    if other is self:
        other = other.copy()
    if not self.buckets:
        if other.buckets or other.schema < self.schema:
            self.schema = other.schema  # nothing to downscale
    elif other.buckets and other.schema < self.schema:
        self.downscale(self.schema - other.schema)
    buckets = self.buckets
    shift = other.schema - self.schema
    if shift > 0:
        for i, c in other.buckets.items():
            j = ((i - 1) >> shift) + 1
            buckets[j] = buckets.get(j, 0.0) + c
    else:
        for i, c in other.buckets.items():
            buckets[i] = buckets.get(i, 0.0) + c
    self.zero_count += other.zero_count
    self.count += other.count
    self.sum += other.sum
    lo, hi = other.min, other.max
    if lo < self.min or lo != lo:
        self.min = lo
    if hi > self.max or hi != hi:
        self.max = hi
    if other.zero_threshold != self.zero_threshold:
        self._widen_zero(max(self.zero_threshold, other.zero_threshold))
    if len(buckets) > MAX_BUCKETS:
        self._fit()
    return self


def reference_merge_into(acc: V.Value, v: V.Value, shape: str) -> V.Value:
    if shape == V.HISTOGRAM:
        return reference_merge(acc, v)
    for key, h in v.items():
        if key in acc:
            reference_merge(acc[key], h)
        else:
            acc[key] = h.copy()
    return acc


# -- wire histograms, valid and nearly valid -------------------------------------------------------

weights = st.sampled_from([1.0, 2.0, 3.0]) | st.floats(0.01, 100.0)  # fractional counts too
observations = st.lists(st.tuples(st.floats(-1e3, 1e6, allow_nan=False), weights), max_size=30)


@st.composite
def histograms(draw) -> Histogram:
    """A histogram as a sender builds it: any schema and zero threshold, values spread over a
    narrow or a very wide range (more than MAX_BUCKETS buckets at the schema: downscaled),
    fractional counts, and ``min``/``max`` known, not known, or empty."""
    h = Histogram(draw(st.integers(MIN_SCHEMA, MAX_SCHEMA)), draw(st.sampled_from([0.0, 0.0, 1e-3, 2.5])))
    wide = draw(st.booleans())
    for x, w in draw(observations):
        h.record(math.ldexp(abs(x) + 1.0, int(x) % 200 - 100) if wide else x, w)
    if draw(st.integers(0, 4)) == 0:
        h.forget_range()
    return h


@st.composite
def wire_histograms(draw) -> dict:
    """``Histogram.to_json`` of a histogram, often altered: one of min and max left out, a zero
    or negative or non-finite count, a key not canonical or out of range, counts that do not
    add up, min above max, a schema out of range, more buckets than a histogram holds..."""
    obj = draw(histograms()).to_json()
    change = draw(st.integers(0, 14))
    buckets = obj["buckets"]
    if change == 1:
        obj.pop(draw(st.sampled_from(["min", "max"])), None)
    elif change == 2 and buckets:
        buckets[next(iter(buckets))] = draw(st.sampled_from([0.0, -1.0, math.inf, math.nan, -0.0]))
    elif change == 3:
        obj[draw(st.sampled_from(["count", "sum", "zero_count", "zero_threshold", "min", "max"]))] = \
            draw(st.sampled_from([math.nan, math.inf, -math.inf, -1.0, None, True, "1"]))
    elif change == 4 and buckets:
        key = next(iter(buckets))
        bad = draw(st.sampled_from(["0" + key.lstrip("-"), "+" + key, " " + key, "1e2", "x", "99999999"]))
        buckets[bad] = buckets.pop(key)
    elif change == 5:
        lo, hi = _INDEX_RANGE[obj["schema"]]
        buckets[str(draw(st.sampled_from([lo - 1, hi + 1])))] = 1.0
        obj["count"] += 1.0
    elif change == 6:
        obj["count"] += draw(st.sampled_from([1.0, 1e-3, 1e-12]))
    elif change == 7 and "min" in obj:
        obj["min"], obj["max"] = obj["max"] + 1.0, obj["min"]
    elif change == 8:
        obj["schema"] = draw(st.sampled_from([MIN_SCHEMA - 1, MAX_SCHEMA + 1, 3.0, True]))
    elif change == 9:  # more buckets than a histogram keeps: downscaled on arrival
        start = draw(st.integers(-50, 50))
        obj["buckets"] = {str(i): 1.0 for i in range(start, start + draw(st.integers(150, 400)))}
        obj["count"] = obj["zero_count"] + len(obj["buckets"])
        obj["schema"] = 8
    elif change == 10:
        obj[draw(st.sampled_from(["extra", "Count"]))] = 1.0
    elif change == 11:
        del obj[draw(st.sampled_from(["count", "buckets", "schema"]))]
    elif change == 12:  # finite counts whose sum is not
        obj["buckets"] = {"7": 1e308, "8": 1e308}
        obj["count"] = 1e308
    return obj


def check_same_as_reference(obj: object, shape: str) -> None:
    data = msgspec.msgpack.encode(obj)
    try:
        want = reference_decode(data, shape)
    except InputError as err:
        with pytest.raises(InputError) as got:
            V.decode_msgpack(data, shape)
        assert got.value.field == err.field, "the same field is named"
        return
    assert exact_value(V.decode_msgpack(data, shape), shape) == exact_value(want, shape)


@given(wire_histograms())
@SETTINGS
def test_a_wire_histogram_decodes_exactly_as_the_checked_path(obj):
    check_same_as_reference(obj, V.HISTOGRAM)


@given(st.dictionaries(st.sampled_from(["/a", "/b", "/c", "/d"]), wire_histograms(), max_size=4))
@SETTINGS
def test_a_wire_heatmap_decodes_exactly_as_the_checked_path(obj):
    check_same_as_reference(obj, V.DISCRETE_HISTOGRAM)


def test_a_key_known_at_one_schema_is_still_checked_at_another() -> None:
    """Index 9,000 is in the float range at schema 4, not at schema 3 (2**(9000/8) > 1e308)."""
    assert _INDEX_RANGE[3][1] < 9000 < _INDEX_RANGE[4][1]
    at = {"zero_threshold": 0.0, "zero_count": 0.0, "count": 1.0, "sum": 1.0, "buckets": {"9000": 1.0}}
    for _ in range(2):  # the second time the key is known
        h = V.decode_msgpack(msgspec.msgpack.encode({"schema": 4, **at}), V.HISTOGRAM)
        assert h.buckets == {9000: 1.0}
    with pytest.raises(InputError) as err:
        V.decode_msgpack(msgspec.msgpack.encode({"schema": 3, **at}), V.HISTOGRAM, "v")
    assert err.value.field == "v.buckets.9000"


# -- merging -----------------------------------------------------------------------------------------


@given(st.lists(histograms(), min_size=1, max_size=12))
@SETTINGS
def test_merge_gives_exactly_what_the_merge_before_gave(hs):
    """Any schemas, zero thresholds, fractional counts, unknown ranges, downscaling on the way."""
    fast, ref = Histogram(), Histogram()
    for h in hs:
        fast.merge(h)
        reference_merge(ref, h)
        assert exact(fast) == exact(ref)
    first = hs[0].copy()
    assert exact(first.merge(first)) == exact(reference_merge(hs[0].copy(), hs[0])), "self-merge"


def latency_partials(rng: random.Random, hosts: int, dyadic: bool) -> list[tuple[str, dict]]:
    """One tick's heatmap of 6 routes per host (some hosts without a route, or empty), with the
    values each recorded. Dyadic values (multiples of 1/64 below 2**20) are summed exactly in any
    order, so the merge must equal one histogram of every observation."""
    out = []
    for n in range(hosts):
        seen: dict[str, list[float]] = {}
        for route in rng.sample(["/a", "/b", "/c", "/d", "/e", "/f"], rng.randint(0, 6)):
            k = rng.choice([0, 1, 5, 40])
            if dyadic:
                seen[route] = [rng.randint(0, 2**26) / 64 for _ in range(k)]
            else:
                seen[route] = [rng.lognormvariate(-4.5, 2.0) for _ in range(k)]
        out.append((f"h{n}", seen))
    return out


def as_value(seen: dict[str, list[float]]) -> dict[str, Histogram]:
    value = {}
    for route, xs in seen.items():
        h = value[route] = Histogram()
        for x in xs:
            h.record(x)
    return value


def heatmap_inst(shape: str = V.DISCRETE_HISTOGRAM) -> Instrumentation:
    return Instrumentation(id=1, module="sim", stat="requests", predicate={},
                           decomposition=("route", "latency"), granularity=1, retention=600, idle_max=0,
                           persist=False, created=T0, shape=shape, discrete="route", numeric="latency")


@pytest.mark.parametrize("dyadic", [True, False])
def test_a_slot_of_heatmaps_merges_exactly(dyadic: bool) -> None:
    """Through the aggregator, as the bus hands it batches: the final slot equals the reference
    merge of the checked path's values, every field; with dyadic values it also equals one
    histogram per route recorded from every host's observations."""
    rng = random.Random(15 + dyadic)
    partials = latency_partials(rng, 300, dyadic)
    agg = Aggregator(MemoryBus())
    agg.enable(heatmap_inst())
    finals = []
    agg.listeners.append(lambda inst, point: finals.append(point))
    reference: dict = {}
    for host, seen in partials:
        encoded = V.encode(as_value(seen), V.DISCRETE_HISTOGRAM)
        batch = m.decode(m.encode(m.Batch(host, T0, T0 + 0.5, [m.Partial(1, encoded)])), m.RawBatch)
        agg.add_batch(batch, T0 + 0.6)
        checked = reference_decode(msgspec.msgpack.encode(encoded), V.DISCRETE_HISTOGRAM)
        reference_merge_into(reference, checked, V.DISCRETE_HISTOGRAM)
    agg.windows[1].expire(T0 + 10)  # (final at the first host, the only one expected then; revised since)
    final = finals[-1]
    assert final.nsources == 300 and not agg.dropped
    assert exact_value(final.value, V.DISCRETE_HISTOGRAM) == exact_value(reference, V.DISCRETE_HISTOGRAM)
    if dyadic:
        everything = as_value({route: [x for _, seen in partials for x in seen.get(route, [])]
                               for route in {r for _, seen in partials for r in seen}})
        assert exact_value(final.value, V.DISCRETE_HISTOGRAM) == exact_value(everything, V.DISCRETE_HISTOGRAM)


MALFORMED = [
    ({"count": math.nan}, "value.count"),
    ({"sum": math.inf}, "value.sum"),
    ({"zero_threshold": -1.0}, "value.zero_threshold"),
    ({"buckets": {"3": -1.0}, "count": -1.0}, "value.count"),
    ({"buckets": {"03": 1.0}}, "value.buckets.03"),
    ({"buckets": {"3": 1.0, "4": math.nan}}, "value.buckets.4"),
    ({"buckets": {str(_INDEX_RANGE[3][1] + 1): 1.0}}, f"value.buckets.{_INDEX_RANGE[3][1] + 1}"),
    ({"count": 2.0}, "value.count"),  # the buckets hold 1
    ({"min": 5.0, "max": 1.0}, "value.min"),
    ({"min": None}, "value.min"),
    ({"schema": 9}, "value.schema"),
    ({"count": True}, "value.count"),
    ({"extra": 1.0}, "value"),
]


@pytest.mark.parametrize(("change", "field"), MALFORMED)
def test_a_malformed_histogram_is_refused_and_changes_nothing(change: dict, field: str) -> None:
    """Refused naming the field; through the aggregator it is dropped, the slot is as it was, and
    the same host's valid partial for that second is merged afterwards (not a duplicate)."""
    good = {"schema": 3, "zero_threshold": 0.0, "zero_count": 0.0, "count": 1.0, "sum": 2.0, "min": 2.0,
            "max": 2.0, "buckets": {"8": 1.0}}
    bad = {**good, **change}
    with pytest.raises(InputError) as err:
        V.decode_msgpack(msgspec.msgpack.encode(bad), V.HISTOGRAM)
    assert err.value.field == field
    agg = Aggregator(MemoryBus())
    agg.enable(heatmap_inst(V.HISTOGRAM))
    window = agg.windows[1]

    def send(host: str, value: dict) -> None:
        batch = m.Batch(host, T0, T0 + 0.5, [m.Partial(1, value)])
        agg.add_batch(m.decode(m.encode(batch), m.RawBatch), T0 + 0.6)

    send("other", good)  # the slot exists and holds one host
    before = exact(window.slots[T0].raw), window.slots[T0].hosts, window.slots[T0].seen
    send("h", bad)
    assert agg.dropped["malformed_value"] == 1
    assert (exact(window.slots[T0].raw), window.slots[T0].hosts, window.slots[T0].seen) == before
    send("h", good)
    assert window.duplicates == 0 and window.slots[T0].raw.count == 2.0


def test_a_zero_count_bucket_takes_the_slow_path_and_is_dropped() -> None:
    """msgspec refuses zero counts (a histogram never writes them); the checked path drops them."""
    obj = {"schema": 3, "zero_threshold": 0.0, "zero_count": 0.0, "count": 1.0, "sum": 2.0,
           "buckets": {"8": 1.0, "9": 0.0}}
    h = V.decode_msgpack(msgspec.msgpack.encode(obj), V.HISTOGRAM)
    assert h.buckets == {8: 1.0} and math.isnan(h.min)


# -- the window's expected hosts ---------------------------------------------------------------------


class ReferenceWindow(Window):
    """A window whose expected hosts are computed as before issue 15 (every EXPECTED_REFRESH)."""

    def _expected_bits(self, now: float) -> int:
        if not 0 <= now - self._expected_at < 0.25:
            bit = self._host_bit
            self._expected = sum(1 << bit[h] for h, t in self.last_seen.items() if now - t < STALE_AFTER)
            self._expected_n = self._expected.bit_count()
            self._expected_at = now
        return self._expected


@pytest.mark.parametrize("seed", range(8))
def test_expected_hosts_are_those_of_the_recomputation_every_time(seed: int) -> None:
    """Hosts come and go (silent for longer than STALE_AFTER, back again), send twice, late, with
    the clock jumping back and forth. The final points (sources
    and expected sources) are those of the window that recomputes its expected hosts each time."""
    rng = random.Random(seed)
    inst = Instrumentation(id=1, module="cpu", stat="usage", predicate={}, decomposition=("mode",),
                           granularity=rng.choice([1, 1, 2]), retention=60, idle_max=0, persist=False,
                           created=T0, shape=V.DISCRETE, discrete="mode")
    got, want = [], []
    fast = Window(inst, 50, 1.5, lambda i, p: got.append(p))
    ref = ReferenceWindow(inst, 50, 1.5, lambda i, p: want.append(p))
    hosts = [f"h{i}" for i in range(8)]
    away: dict[str, int] = {}
    for second in range(120):
        for host in hosts:
            if away.get(host, -1) >= second:
                continue
            if rng.random() < 0.02:
                away[host] = second + rng.randint(1, 12)  # sometimes longer than STALE_AFTER
                continue
            tick = T0 + second - (rng.random() < 0.05) * rng.randint(1, 4)  # late now and then
            now = T0 + second + rng.choice([0.1, 0.3, 0.6, 0.95, -2.0])
            times = 2 if rng.random() < 0.02 else 1  # sent twice
            for w in (fast, ref):
                for _ in range(times):
                    w.add(host, tick, {"user": 1.0}, now)
        if second % 7 == 3:
            now = T0 + second + rng.choice([0.5, 2.0, 4.0])
            for w in (fast, ref):
                w.expire(now)
    for w in (fast, ref):
        w.expire(T0 + 200)
    assert [(p.start_time, p.nsources, p.expected, p.value, p.revised) for p in got] == \
        [(p.start_time, p.nsources, p.expected, p.value, p.revised) for p in want]
    assert len(got) > 50
    assert fast.duplicates == ref.duplicates
    assert {p.expected for p in got} != {8}, "hosts went stale and came back"
