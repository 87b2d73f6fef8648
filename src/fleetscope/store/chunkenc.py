"""Chunks: a :class:`~fleetscope.store.block.Block` as the bytes the store keeps.

A chunk is a msgpack map compressed with zlib. The map holds the format
version, the keys, and the block's matrices, each encoded by the column
encoder (:mod:`fleetscope.store.colenc`): the per-point columns (``meta``),
then either the numbers (``values``) or the histograms (``hist``: the
:data:`~fleetscope.store.block.HIST_FIELDS` but min and max side by side;
``buckets``; the key and index of each bucket column as varints, the indices
delta-encoded within a key; and ``range``: min and max). Histograms are sparse:
only non-empty buckets are stored. ``docs/format/chunks.md`` is the format, key
by key. Lossless: ``decode(encode(b))`` equals ``b`` bit for bit.

``range`` came later than the rest of format 1: chunks written before have none
(their histograms decode with min and max not known), and a reader that
predates it skips it (it reads those histograms the same way), so it did not
need a new ``FORMAT``.
"""

from __future__ import annotations

import zlib

import msgspec
import numpy as np

from fleetscope.store.block import NHIST_FIELDS, POINT_COLUMNS, RANGE_FIELDS, Block, Hists
from fleetscope.store.colenc import (
    KEY_COLS,
    decode_matrix,
    encode_matrix,
    unvarints,
    unzigzag,
    varints,
    zigzag,
)

FORMAT = 1  # KEY_VERSION of the chunks this code writes and reads
# Keys of the chunk map (docs/format/chunks.md)
KEY_VERSION = "v"  # int: FORMAT
KEY_KEYS = "keys"  # list of str: the block's keys, sorted ("" for a scalar)
KEY_META = "meta"  # matrix [n, len(POINT_COLUMNS)]: the per-point columns
KEY_VALUES = "values"  # matrix [n, k]: numbers (sums); only in number chunks
KEY_HIST = "hist"  # matrix [n, NCORE_FIELDS * k]: histogram fields but min and max, field by field
KEY_BUCKET_KEY = "bkey"  # varints: key index of each bucket column
KEY_BUCKET_INDEX = "bidx"  # varints: zigzagged delta of each bucket column's index (from 0 per key run)
KEY_BUCKETS = "buckets"  # matrix [n, C]: bucket counts (NaN: empty bucket)
KEY_HIST_RANGE = "range"  # matrix [n, 2 * k]: min of each key, then max (NaN: none); optional
DEFAULT_LEVEL = 6  # zlib's compression level
# Histogram fields in KEY_HIST, the first of HIST_FIELDS; the rest (RANGE_FIELDS) in KEY_HIST_RANGE.
NCORE_FIELDS = NHIST_FIELDS - len(RANGE_FIELDS)


def encode(block: Block, level: int = DEFAULT_LEVEL) -> bytes:
    """The chunk bytes of ``block`` (see the module docstring)."""
    meta = np.column_stack([getattr(block, name) for name in POINT_COLUMNS]).astype(float)
    doc: dict = {KEY_VERSION: FORMAT, KEY_KEYS: list(block.keys), KEY_META: encode_matrix(meta)}
    if block.values is not None:
        doc[KEY_VALUES] = encode_matrix(block.values)
    else:
        hs = block.hists
        doc[KEY_HIST] = encode_matrix(np.hstack(hs[:NCORE_FIELDS]))
        doc[KEY_BUCKET_KEY] = varints(hs.bucket_key.astype(np.uint64))
        # bucket indices: delta within a key (sorted), the first of a key zigzagged
        doc[KEY_BUCKET_INDEX] = varints(zigzag(np.diff(hs.bucket_index, prepend=0)))
        doc[KEY_BUCKETS] = encode_matrix(hs.buckets)
        doc[KEY_HIST_RANGE] = encode_matrix(np.hstack(hs[NCORE_FIELDS:NHIST_FIELDS]))
    return zlib.compress(msgspec.msgpack.encode(doc), level)


def decode(data: bytes) -> Block:
    """The block a chunk holds. ValueError ("corrupt chunk: ...") if the bytes are not a chunk
    of this format."""
    try:
        doc = msgspec.msgpack.decode(zlib.decompress(data))
    except (zlib.error, msgspec.DecodeError) as exc:
        raise ValueError(f"corrupt chunk: {exc}") from None
    if not isinstance(doc, dict) or doc.get(KEY_VERSION) != FORMAT:
        raise ValueError("corrupt chunk: unknown format")
    try:
        return _decode_doc(doc)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"corrupt chunk: {exc!r}") from None


def _decode_doc(doc: dict) -> Block:
    meta = decode_matrix(doc[KEY_META])
    times, counts, nsrc, exp, rev = (meta[:, i].astype(np.int64) for i in range(len(POINT_COLUMNS)))
    keys = tuple(doc[KEY_KEYS])
    if KEY_VALUES in doc:
        return Block(times, counts, nsrc, exp, rev.astype(bool), keys, decode_matrix(doc[KEY_VALUES]), None)
    k = len(keys)
    core = decode_matrix(doc[KEY_HIST])
    if KEY_HIST_RANGE in doc:
        extent = decode_matrix(doc[KEY_HIST_RANGE])
    else:  # written before min and max were kept: not known
        extent = np.full((len(times), len(RANGE_FIELDS) * k), np.nan)
    fields = np.hstack([core, extent])
    if fields.shape != (len(times), NHIST_FIELDS * k):
        raise ValueError(f"histogram fields of shape {fields.shape} for {len(times)} points and {k} keys")
    ncols = doc[KEY_BUCKETS][KEY_COLS]
    bkey = unvarints(doc[KEY_BUCKET_KEY], ncols).astype(np.int64)
    bidx = np.cumsum(unzigzag(unvarints(doc[KEY_BUCKET_INDEX], ncols)))
    hs = Hists(*(fields[:, i * k:(i + 1) * k] for i in range(NHIST_FIELDS)), bkey, bidx,
               decode_matrix(doc[KEY_BUCKETS]))
    return Block(times, counts, nsrc, exp, rev.astype(bool), keys, None, hs)
