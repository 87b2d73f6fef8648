"""A read-only reader of BoltDB files (bbolt), enough to read podman's ``bolt_state.db``.

The format (``go.etcd.io/bbolt``: ``page.go``, ``db.go``, ``bucket.go``): the
file is pages of ``page_size`` bytes. Pages 0 and 1 are meta pages, the valid
one (magic, version 2, FNV-1a checksum) with the higher transaction id being
current; it gives the root bucket's page. A bucket is a B+tree of branch pages
(elements: key and child page) and leaf pages (elements: key and value; a value
flagged as a bucket is a nested bucket's header: its root page and sequence,
the root page inline after the header when the root is 0). A page's
``overflow`` says how many further pages it spans.

Only what a reader needs is here: no writes, no freelist. The file is read whole
(podman's database is a few hundred KB for hundreds of containers) and parsed
lazily: :meth:`BoltFile.bucket` walks one path of nested buckets.
A file this module does not understand raises :class:`BoltError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from fleetscope.sources.procfs import read_file

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
META = struct.Struct("<IIII QQ QQQ Q")  # magic, version, page size, flags, root (page, sequence),
#                                        freelist, page count, txid, checksum
BRANCH_ELEMENT = struct.Struct("<IIQ")  # pos, key size, child page
LEAF_ELEMENT = struct.Struct("<IIII")  # flags, pos, key size, value size
BUCKET_HEADER = struct.Struct("<QQ")  # root page (0: inline), sequence
BRANCH_PAGE, LEAF_PAGE, META_PAGE = 0x01, 0x02, 0x04
BUCKET_LEAF_FLAG = 0x01
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 512, 1 << 16
MAX_DEPTH = 64  # a deeper tree is a broken file (or a loop)


class BoltError(ValueError):
    """The file is not a BoltDB file this reader understands (or is half written)."""


def _fnv1a(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


class Bucket:
    """One bucket: its key/value pairs and nested buckets, read on demand."""

    def __init__(self, db: BoltFile, root: int, inline: memoryview | None) -> None:
        self._db = db
        self._root = root
        self._inline = inline

    def items(self) -> Iterator[tuple[bytes, bytes | Bucket]]:
        """(key, value) in key order; a nested bucket's value is a :class:`Bucket`."""
        page = self._inline if self._root == 0 else self._db.page(self._root)
        if page is None:
            raise BoltError("inline bucket without a page")
        yield from self._db.walk(page, 0)

    def get(self, key: bytes) -> bytes | Bucket | None:
        for k, v in self.items():
            if k == key:
                return v
        return None

    def bucket(self, *path: bytes) -> Bucket | None:
        """The nested bucket at ``path`` (None where one is missing or not a bucket)."""
        b: Bucket | None = self
        for name in path:
            got = b.get(name) if b is not None else None
            b = got if isinstance(got, Bucket) else None
        return b


class BoltFile:
    """A BoltDB file as it was when read."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        if len(data) < 2 * MIN_PAGE_SIZE:
            raise BoltError("file too short for two meta pages")
        size = struct.unpack_from("<I", data, PAGE_HEADER.size + 8)[0]
        if not MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE:
            raise BoltError(f"page size {size} out of range")
        self.page_size = size
        best = None
        for n in (0, 1):
            meta = self._meta(n)
            if meta is not None and (best is None or meta[8] > best[8]):
                best = meta
        if best is None:
            raise BoltError("no valid meta page (not BoltDB, another version, or half written)")
        self.root = Bucket(self, best[4], None)

    @classmethod
    def open(cls, path: str) -> BoltFile:
        return cls(read_file(path))

    def _meta(self, n: int) -> tuple | None:
        off = n * self.page_size
        if off + PAGE_HEADER.size + META.size > len(self.data):
            return None
        _, flags, _, _ = PAGE_HEADER.unpack_from(self.data, off)
        meta = META.unpack_from(self.data, off + PAGE_HEADER.size)
        if not flags & META_PAGE or meta[0] != MAGIC or meta[1] != VERSION:
            return None
        start = off + PAGE_HEADER.size
        if _fnv1a(bytes(self.data[start : start + META.size - 8])) != meta[-1]:
            return None
        return meta

    def page(self, pgid: int) -> memoryview:
        off = pgid * self.page_size
        if pgid < 2 or off + PAGE_HEADER.size > len(self.data):
            raise BoltError(f"page {pgid} outside the file")
        overflow = PAGE_HEADER.unpack_from(self.data, off)[3]
        end = off + (overflow + 1) * self.page_size
        if end > len(self.data):
            raise BoltError(f"page {pgid} runs past the end of the file")
        return self.data[off:end]

    def walk(self, page: memoryview, depth: int) -> Iterator[tuple[bytes, bytes | Bucket]]:
        """The leaf elements under ``page`` (a page or an inline bucket's page), in key order."""
        if depth > MAX_DEPTH:
            raise BoltError("tree too deep")
        _, flags, count, _ = PAGE_HEADER.unpack_from(page, 0)
        base = PAGE_HEADER.size
        try:
            if flags & BRANCH_PAGE:
                for i in range(count):
                    _, _, child = BRANCH_ELEMENT.unpack_from(page, base + i * BRANCH_ELEMENT.size)
                    yield from self.walk(self.page(child), depth + 1)
            elif flags & LEAF_PAGE:
                for i in range(count):
                    at = base + i * LEAF_ELEMENT.size
                    eflags, pos, ksize, vsize = LEAF_ELEMENT.unpack_from(page, at)
                    k = at + pos
                    key = bytes(page[k : k + ksize])
                    value = page[k + ksize : k + ksize + vsize]
                    if len(key) != ksize or len(value) != vsize:
                        raise BoltError("element runs past its page")
                    if eflags & BUCKET_LEAF_FLAG:
                        root = BUCKET_HEADER.unpack_from(value, 0)[0]
                        yield key, Bucket(self, root, value[BUCKET_HEADER.size :] if root == 0 else None)
                    else:
                        yield key, bytes(value)
            else:
                raise BoltError(f"page of unknown type {flags:#x}")
        except struct.error as exc:
            raise BoltError(f"truncated page: {exc}") from exc
