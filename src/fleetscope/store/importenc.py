"""The bytes of an import chunk: the samples of one metric of one import, in columns.

An import keeps its rows as the log gave them (per host, metric, fields, time, at the
log's own resolution), so that any instrumentation, made before or after the import, can be
evaluated over them. A chunk holds up to :data:`CHUNK_ROWS` samples of one metric:

* ``keys``: the distinct field values of the metric's rows (one tuple per column, fields in
  :data:`fleetscope.perflogs.metrics.COLUMNS` order, or the order a CSV import defined); text,
  but for the last value of an events import's key (:mod:`fleetscope.perflogs.csvevents`):
  the numeric field, a float;
* ``times`` (int64, interval starts, epoch seconds) and ``intervals`` (int32, seconds);
* ``values[n, k]`` (float64): the value of column ``k`` at sample ``n``, NaN where the log
  had no such row then.

Layout: a msgpack map (:data:`HEADER_KEYS`) followed by one zlib stream of the arrays,
times as deltas, the values byte-shuffled (the i-th bytes of every float together: the
exponents and high mantissa bytes of a slowly moving figure repeat, so zlib finds them);
measured on a month of 1-second vmstat: about 1.3 bytes per value (see docs/benchmarks.md).
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import msgspec
import numpy as np

FORMAT_VERSION = 1
CHUNK_ROWS = 4096  # samples per chunk: about an hour of 1-second logs, a month of 10-minute ones
ZLIB_LEVEL = 1  # level 6 is 4 times slower for a few percent less (docs/benchmarks.md)
FLOAT_BYTES = 8
# The header map's keys: format version, keys (list of lists of strings), number of samples.
HEADER_KEYS = ("v", "keys", "n")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class ImportChunk(NamedTuple):
    """The decoded samples of one metric (see the module docstring)."""

    keys: tuple[tuple[str, ...], ...]
    times: np.ndarray
    intervals: np.ndarray
    values: np.ndarray


def encode(chunk: ImportChunk) -> bytes:
    n, k = chunk.values.shape
    assert len(chunk.times) == len(chunk.intervals) == n and len(chunk.keys) == k
    head = _encoder.encode({"v": FORMAT_VERSION, "keys": [list(key) for key in chunk.keys], "n": n})
    times = np.asarray(chunk.times, np.int64)
    deltas = np.diff(times, prepend=np.int64(0))
    shuffled = np.ascontiguousarray(chunk.values, np.float64).view(np.uint8).reshape(-1, FLOAT_BYTES).T
    body = zlib.compress(deltas.tobytes() + np.asarray(chunk.intervals, np.int32).tobytes()
                         + shuffled.tobytes(), ZLIB_LEVEL)
    return len(head).to_bytes(4, "little") + head + body


def decode(data: bytes) -> ImportChunk:
    data = bytes(data)
    size = int.from_bytes(data[:4], "little")
    head = _decoder.decode(data[4:4 + size])
    if head.get("v") != FORMAT_VERSION:
        raise ValueError(f"import chunk of format {head.get('v')!r}, not {FORMAT_VERSION}")
    n, keys = head["n"], tuple(tuple(key) for key in head["keys"])
    body = zlib.decompress(data[4 + size:])
    times = np.cumsum(np.frombuffer(body, np.int64, n))
    intervals = np.frombuffer(body, np.int32, n, 8 * n).astype(np.int64)
    raw = np.frombuffer(body, np.uint8, n * len(keys) * FLOAT_BYTES, 12 * n)
    values = raw.reshape(FLOAT_BYTES, -1).T.copy().view(np.float64).reshape(n, len(keys))
    return ImportChunk(keys, times, intervals, values)
