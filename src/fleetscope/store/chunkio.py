"""Between blocks and a tier's stored chunks: cutting a block into chunks, reading a range back.

A tier's chunks each cover at most one span of the tier (an hour of seconds, a
day of minutes...): :func:`to_chunks` cuts a block at span boundaries and
encodes each part. :class:`ChunkReader` reads the stored points of a range:
the chunk index first, then only the chunks the :class:`ChunkCache` does not
hold; where chunks overlap, the one written last wins.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.tiers import Tier
from fleetscope.store import chunkenc
from fleetscope.store.base import NewChunk
from fleetscope.store.block import Block, between, compact_columns, merge, nsamples, take
from fleetscope.store.cache import ChunkCache

# Index reads of one range before the reader settles for what it has: a compaction that
# replaces chunks between the index read and the data read makes it read the index again.
READ_ATTEMPTS = 3


def to_chunks(inst_id: int, tier: Tier, block: Block) -> list[NewChunk]:
    """``block`` as chunks of ``tier``, one per span it touches."""
    if not block.n:
        return []
    span_of = block.times // tier.span
    cuts = np.r_[0, np.flatnonzero(np.diff(span_of)) + 1, block.n]
    out = []
    for a, b in pairwise(cuts.tolist()):
        part = compact_columns(take(block, slice(a, b)))
        out.append(NewChunk(inst_id, tier.level, part.start, part.last + tier.resolution, part.n,
                            nsamples(part), chunkenc.encode(part)))
    return out


class ChunkReader:
    """Reads stored points of a store through a cache (None: decode every chunk every time)."""

    def __init__(self, store, cache: ChunkCache | None) -> None:
        self.store = store
        self.cache = cache

    def read(self, inst: Instrumentation, tier: Tier, start: int, end: int) -> Block:
        """The stored points of ``tier`` in ``[start, end)``, later writes winning: the tier as
        stored, nothing computed on the fly."""
        if self.cache is None:
            found = self.store.read_chunks(inst.id, tier.level, start, end, tier.span)
            return merge([between(chunkenc.decode(c.data), start, end) for c in found], inst.shape)
        for _ in range(READ_ATTEMPTS):
            index = self.store.read_chunks(inst.id, tier.level, start, end, tier.span, with_data=False)
            blocks = self.cache.get_many(c.id for c in index)
            missing = [i for i, b in blocks.items() if b is None]
            for c in self.store.read_chunk_ids(missing) if missing else ():
                blocks[c.id] = b = chunkenc.decode(c.data)
                self.cache.put(c.id, b)
            if all(b is not None for b in blocks.values()):
                break
            # A compaction replaced chunks between the two reads: read the index again.
        parts = [between(blocks[c.id], start, end) for c in index if blocks[c.id] is not None]
        return merge(parts, inst.shape)
