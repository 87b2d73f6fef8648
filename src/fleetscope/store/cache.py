"""Decoded chunks kept in memory by chunk id, least recently used first out.

Chunks never change once written (a rewrite gets a new id), so a decoded block
can be kept by id and never goes stale: a dashboard that asks again every few
seconds decodes only the chunks written since. The budget is in bytes of the
blocks' arrays (:func:`block_nbytes`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from fleetscope.store.block import Block

# A block larger than this share of the budget is not kept: one range read of a cold
# instrumentation would otherwise push out everything a dashboard reads again and again.
LARGEST_SHARE = 4  # at most 1/4 of the budget per block
KEY_BYTES = 64  # what one key of a block costs in memory, roughly (a short str in a tuple)


def block_nbytes(block: Block) -> int:
    """The memory a decoded block takes, roughly: its arrays and its keys."""
    arrays = [block.times, block.counts, block.nsources, block.expected, block.revised]
    arrays += [block.values] if block.values is not None else list(block.hists)
    return sum(a.nbytes for a in arrays) + KEY_BYTES * len(block.keys)


class ChunkCache:
    """Blocks by chunk id within ``max_bytes``; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._blocks: OrderedDict[int, Block] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get_many(self, ids: Iterable[int]) -> dict[int, Block | None]:
        """The cached block of each id (None where it is not cached); hits become most recent."""
        with self._lock:
            found = {i: self._blocks.get(i) for i in ids}
            for i, b in found.items():
                if b is not None:
                    self._blocks.move_to_end(i)
        return found

    def put(self, chunk_id: int, block: Block) -> None:
        size = block_nbytes(block)
        if size > self.max_bytes // LARGEST_SHARE:
            return
        with self._lock:
            if chunk_id in self._blocks:
                return
            self._blocks[chunk_id] = block
            self._size += size
            while self._size > self.max_bytes:
                _, old = self._blocks.popitem(last=False)
                self._size -= block_nbytes(old)

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._size = 0
