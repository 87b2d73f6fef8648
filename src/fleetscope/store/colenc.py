"""The column encoder of chunks: one float matrix (NaN: absent) to a small map of byte strings.

Every matrix of numbers in a chunk (the per-point columns, the values, the
histogram fields, the bucket counts) goes through :func:`encode_matrix`, column
by column:

* a column whose values are decimals of at most :data:`MAX_DECIMALS` digits
  after the point that round-trip exactly (byte counts, CPU ticks, histogram
  counts...) is stored as integers, raw or delta-encoded (whichever is
  smaller), zigzagged, in the narrowest of :data:`WIDTHS` bytes, split into
  byte planes. A value up to :data:`MAX_ULPS` units in the last place off its
  decimal (a sum of decimals carries such float noise: 0.1 + 0.2) counts as
  that decimal, and the difference is kept as a small integer per value
  (almost all zero), so the round trip stays exact;
* any other column as float64 XOR-ed with its previous value, split into byte
  planes (the Gorilla idea, left for the compressor to pack).

Absent values cost one bit in a presence bitmap. The map's keys are single
letters (``KEY_*`` below); ``docs/format/chunks.md`` is the format, byte by
byte. Lossless: ``decode_matrix(encode_matrix(m))`` equals ``m`` bit for bit.
Also here: zigzag and LEB128 varints, which the chunk uses for bucket indices.
"""

from __future__ import annotations

import numpy as np

from fleetscope.store.block import EXACT_INT

# Keys of an encoded matrix (docs/format/chunks.md). Columns are numbered in the matrix's order.
KEY_ROWS = "n"  # int: rows (points)
KEY_COLS = "c"  # int: columns
KEY_PRESENT = "p"  # bytes: presence bitmap, column by column, MSB first; absent: all present
KEY_DECIMALS = "k"  # bytes: per column, decimals + 1 (0: stored as float64)
KEY_DELTA = "d"  # bytes: bitmap over the integer columns, 1: delta-encoded
KEY_WIDTH = "w"  # bytes: per integer column, its width code (an index into WIDTHS)
KEY_INTS = "i"  # list of len(WIDTHS) bytes: byte planes of the integer columns of each width
KEY_ULPS = "u"  # bytes: int8 per present integer value, its offset from the decimal; absent: all 0
KEY_FLOATS = "f"  # bytes: byte planes of the XOR-ed float64 columns

MAX_DECIMALS = 12
MAX_ULPS = 4  # how far (in units in the last place) a value may be from its decimal (fits an int8)
WIDTHS = (1, 2, 4, 8)  # bytes per integer: width code w stores 1 << w bytes
FLOAT_BYTES = 8
# Rows on which a column's number of decimals is guessed before the whole column is checked.
GUESS_ROWS = 16
# LEB128: 7 payload bits per byte; the high bit says another byte follows.
VARINT_BITS = 7
VARINT_PAYLOAD = 0x7F
VARINT_MORE = 0x80


def zigzag(a: np.ndarray) -> np.ndarray:
    """Signed to unsigned, small magnitudes to small numbers (0, -1, 1, -2 -> 0, 1, 2, 3)."""
    a = a.astype(np.int64)
    return ((a << 1) ^ (a >> 63)).view(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    signed = np.ascontiguousarray(u).view(np.int64)
    return (np.ascontiguousarray(u) >> np.uint64(1)).view(np.int64) ^ -(signed & 1)


def varints(u: np.ndarray) -> bytes:
    """LEB128: 7 bits per byte, high bit set on all but the last byte of a value."""
    if not u.size:
        return b""
    nbytes = np.ones(u.shape, np.int64)
    rest = u >> np.uint64(VARINT_BITS)
    while rest.any():
        nbytes += rest != 0
        rest >>= np.uint64(VARINT_BITS)
    ends = np.cumsum(nbytes)
    starts = ends - nbytes
    out = np.empty(int(ends[-1]), np.uint8)
    for k in range(int(nbytes.max())):
        sel = nbytes > k
        part = ((u[sel] >> np.uint64(VARINT_BITS * k)) & np.uint64(VARINT_PAYLOAD)).astype(np.uint8)
        out[starts[sel] + k] = part | ((nbytes[sel] > k + 1).astype(np.uint8) << VARINT_BITS)
    return out.tobytes()


def unvarints(buf: bytes, count: int) -> np.ndarray:
    """``count`` LEB128 numbers from ``buf``; ValueError if it holds another number of them."""
    b = np.frombuffer(buf, np.uint8)
    ends = np.flatnonzero(b < VARINT_MORE)
    if len(ends) != count:
        raise ValueError(f"corrupt chunk: {len(ends)} varints where {count} were expected")
    if not count:
        return np.zeros(0, np.uint64)
    starts = np.r_[0, ends[:-1] + 1]
    pos = np.arange(len(b)) - np.repeat(starts, ends - starts + 1)
    parts = (b & VARINT_PAYLOAD).astype(np.uint64) << (VARINT_BITS * pos).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts)


def _planes(u: np.ndarray, present: np.ndarray, size: int) -> bytes:
    """The present values of ``u`` (columns as rows: ``[c, n]``) column by column, ``size``
    bytes each, as byte planes."""
    stream = u.ravel() if present.all() else u[present]
    dtype = np.dtype(f"<u{size}")
    return np.ascontiguousarray(stream.astype(dtype)).view(np.uint8).reshape(-1, size).T.tobytes()


def _unplanes(data: bytes, present: np.ndarray, size: int) -> np.ndarray:
    """The inverse of :func:`_planes`: ``[c, n]`` uint64 with zeros where absent."""
    count = int(present.sum())
    planes = np.frombuffer(data, np.uint8)
    if planes.size != count * size:
        raise ValueError("corrupt chunk: column sizes do not match")
    stream = np.ascontiguousarray(planes.reshape(size, count).T).view(f"<u{size}").ravel()
    if count == present.size:
        return stream.astype(np.uint64).reshape(present.shape)
    out = np.zeros(present.shape, np.uint64)
    out[present] = stream
    return out


def _ulps(value: np.ndarray, decimal: np.ndarray) -> np.ndarray:
    """How many units in the last place ``value`` lies above ``decimal`` (same signs, or zero)."""
    return value.view(np.int64) - decimal.view(np.int64)


def _near(decimal: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Where ``value`` is within MAX_ULPS units in the last place of ``decimal``."""
    same_sign = np.signbit(decimal) == np.signbit(value)
    return same_sign & (np.abs(_ulps(value, decimal)) <= MAX_ULPS)


def _decimals(sample: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Per row of ``sample``, the fewest decimals (0..MAX_DECIMALS) that hold its values
    exactly, or -1; rows not ``allowed`` get -1."""
    out = np.full(sample.shape[0], -1, np.int64)
    todo = allowed.copy()
    for k in range(MAX_DECIMALS + 1):
        if not todo.any():
            break
        s = 10.0 ** k
        with np.errstate(over="ignore", invalid="ignore"):
            iv = np.rint(sample * s)
            ok = todo & (np.abs(iv) < EXACT_INT).all(axis=1) & _near(iv / s, sample).all(axis=1)
        out[ok] = k
        todo &= ~ok
    return out


def encode_matrix(m: np.ndarray) -> dict:
    """Encode a float matrix column by column (NaN: absent), see the module docstring.

    Works on the transpose (one row per column, contiguous): a column's values are then
    neighbours in memory, as they are in the encoding. Legend: ``iv`` candidate integers,
    ``ic``/``ip`` the integer columns and their presence, ``fc``/``fp`` the float ones.
    """
    n, c = m.shape
    cols = np.ascontiguousarray(m.T)
    present = ~np.isnan(cols)
    out: dict = {KEY_ROWS: n, KEY_COLS: c}
    everything = bool(present.all())
    if not everything:
        out[KEY_PRESENT] = np.packbits(present.ravel()).tobytes()
    if not c or not n:
        return out
    z = np.where(present, cols, 0.0)
    if everything:
        filled = z
    else:
        # Forward-fill absent values so that a delta spans only present ones.
        idx = np.where(present, np.arange(n)[None, :], 0)
        np.maximum.accumulate(idx, axis=1, out=idx)
        filled = np.take_along_axis(z, idx, axis=1)
    decimals = np.full(c, -1, np.int64)
    ints = np.zeros((c, n), np.int64)
    off = np.zeros((c, n), np.int64)  # units in the last place between a value and its decimal
    # The fewest decimals that represent a column exactly: guessed on its first values (so
    # that columns of arbitrary doubles cost one pass, not one per candidate), then checked.
    guess = _decimals(filled[:, :GUESS_ROWS], ~(np.signbit(z) & (z == 0)).any(axis=1))
    for k in range(MAX_DECIMALS + 1):
        rows = np.flatnonzero((guess >= 0) & (guess <= k) & (decimals < 0))
        if not len(rows):
            if not ((guess >= 0) & (decimals < 0)).any():
                break
            continue
        s = 10.0 ** k
        sub = filled[rows]
        with np.errstate(over="ignore", invalid="ignore"):  # huge values simply do not qualify
            iv = np.rint(sub * s)
            back = iv / s
            ok = (np.abs(iv) < EXACT_INT).all(axis=1) & _near(back, sub).all(axis=1)
        good = rows[ok]
        decimals[good] = k
        ints[good] = iv[ok].astype(np.int64)
        off[good] = _ulps(sub[ok], back[ok])
    is_int = decimals >= 0
    out[KEY_DECIMALS] = (decimals + 1).astype(np.uint8).tobytes()
    if is_int.any():
        ic = ints[is_int]
        ip = present[is_int]
        delta = np.diff(ic, axis=1, prepend=0)
        # Delta-encode a column when that makes its numbers smaller (L1: cheap, and close enough
        # to the size the compressor achieves).
        use_delta = (np.abs(np.where(ip, delta, 0)).sum(axis=1, dtype=float)
                     <= np.abs(np.where(ip, ic, 0)).sum(axis=1, dtype=float))
        chosen = zigzag(np.where(use_delta[:, None], delta, ic))
        out[KEY_DELTA] = np.packbits(use_delta).tobytes()
        # Each column in the narrowest of WIDTHS bytes, columns of one width together, split
        # into byte planes: high planes are mostly zeros, which zlib packs.
        top = np.where(ip, chosen, np.uint64(0)).max(axis=1)
        widest = len(WIDTHS) - 1
        width = np.select([top < 1 << (8 * size) for size in WIDTHS[:widest]], list(range(widest)),
                          widest).astype(np.uint8)
        out[KEY_WIDTH] = width.tobytes()
        out[KEY_INTS] = [_planes(chosen[width == w], ip[width == w], size) for w, size in enumerate(WIDTHS)]
        ulps = np.where(ip, off[is_int], 0)
        if ulps.any():
            out[KEY_ULPS] = np.ascontiguousarray(ulps[ip]).astype(np.int8).tobytes()
    if (~is_int).any():
        fc = filled[~is_int]
        fp = present[~is_int]
        raw = fc.view(np.uint64)
        xored = raw ^ np.concatenate([np.zeros((raw.shape[0], 1), np.uint64), raw[:, :-1]], axis=1)
        stream = np.ascontiguousarray(xored[fp])
        out[KEY_FLOATS] = stream.view(np.uint8).reshape(-1, FLOAT_BYTES).T.tobytes()
    return out


def decode_matrix(d: dict) -> np.ndarray:
    """The matrix :func:`encode_matrix` encoded; ValueError ("corrupt chunk: ...") where the
    sizes do not add up."""
    n, c = d[KEY_ROWS], d[KEY_COLS]
    if KEY_PRESENT in d:
        present = np.unpackbits(np.frombuffer(d[KEY_PRESENT], np.uint8), count=n * c).reshape(c, n).view(bool)
    else:
        present = np.ones((c, n), bool)
    cols = np.full((c, n), np.nan)
    if not c or not n:
        return cols.T
    decimals = np.frombuffer(d[KEY_DECIMALS], np.uint8).astype(np.int64) - 1
    is_int = decimals >= 0
    if is_int.any():
        ip = present[is_int]
        width = np.frombuffer(d[KEY_WIDTH], np.uint8)
        zz = np.zeros(ip.shape, np.uint64)
        for w, size in enumerate(WIDTHS):
            sel = width == w
            if sel.any():
                zz[sel] = _unplanes(d[KEY_INTS][w], ip[sel], size)
        ic = unzigzag(zz)
        use_delta = np.unpackbits(np.frombuffer(d[KEY_DELTA], np.uint8), count=ip.shape[0]).view(bool)
        # Absent cells hold 0: a delta carries over them, so cumulate the deltas as they are.
        if use_delta.all():
            np.cumsum(ic, axis=1, out=ic)
        elif use_delta.any():
            ic[use_delta] = np.cumsum(ic[use_delta], axis=1)
        vals = ic / (10.0 ** decimals[is_int])[:, None]
        if KEY_ULPS in d:
            ulps = np.zeros(ip.shape, np.int64)
            ulps[ip] = np.frombuffer(d[KEY_ULPS], np.int8)
            vals = (vals.view(np.int64) + ulps).view(np.float64)
        if not ip.all():
            vals[~ip] = np.nan
        cols[is_int] = vals
    if (~is_int).any():
        fp = present[~is_int]
        count = int(fp.sum())
        planes = np.frombuffer(d[KEY_FLOATS], np.uint8)
        if planes.size != count * FLOAT_BYTES:
            raise ValueError("corrupt chunk: column sizes do not match")
        xored = np.ascontiguousarray(planes.reshape(FLOAT_BYTES, count).T).view(np.uint64).ravel()
        # Undo the XOR with the previous present value of the same column: a prefix XOR
        # over the whole stream, reset at each column start.
        prefix = np.bitwise_xor.accumulate(xored) if count else xored
        per_col = fp.sum(axis=1)
        starts = np.cumsum(per_col) - per_col
        before = np.where(starts > 0, prefix[np.maximum(starts - 1, 0)], np.uint64(0))
        raw = prefix ^ np.repeat(before, per_col)
        fc = np.full(fp.shape, np.nan)
        fc[fp] = raw.view(np.float64)
        cols[~is_int] = fc
    return cols.T
