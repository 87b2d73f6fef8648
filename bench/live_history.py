"""Bytes per stored sample of real data: what this machine's own agent measures.

    .venv/bin/python bench/live_history.py [--seconds 600]

Runs a real `fleetscope serve` (its default instrumentations, persisted) for
``--seconds``, stops it, and reads its SQLite store: bytes per sample of the
per-second tier as the chunks lie on disk (small chunks of an unfinished hour:
flushed every 5 s, merged a dozen at a time), and as compaction leaves a
finished hour (one chunk per instrumentation per hour: the bench re-encodes the
same points that way). DESIGN.md's target is under 2 bytes per stored sample
on realistic data; `bench/store.py` measures synthetic data of a fleet.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

from serving import start_server

from fleetscope.store import chunkenc
from fleetscope.store.block import merge, nsamples
from fleetscope.store.open import open_store


def measure(db: Path) -> list[tuple[str, int, int, int]]:
    """Per instrumentation: name, samples, bytes on disk, bytes as one chunk."""
    store = open_store(f"sqlite:///{db}")
    try:
        out = []
        for inst in store.list_instrumentations():
            found = store.read_chunks(inst.id, 0, 0, 2**40, 3600)
            if not found:
                continue
            blocks = [chunkenc.decode(c.data) for c in found]
            merged = merge(blocks, inst.shape)
            name = f"{inst.metric} by {','.join(inst.decomposition) or '-'}"
            out.append((name, nsamples(merged), sum(len(c.data) for c in found),
                        len(chunkenc.encode(merged))))
        return out
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=600, help="how long the server collects")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetscope-live-") as tmp:
        proc, _ = start_server(tmp)
        try:
            time.sleep(args.seconds)
        finally:
            proc.send_signal(signal.SIGTERM)  # flushes the head
            proc.wait(30)
        rows = measure(Path(tmp) / "fleetscope.db")
    print(f"# {args.seconds} s of this machine's own data, default instrumentations")
    print(f"{'instrumentation':<40} {'samples':>8} {'B/sample on disk':>17} {'B/sample, one chunk':>20}")
    for name, n, disk, one in rows:
        print(f"{name:<40} {n:>8} {disk / max(n, 1):>17.2f} {one / max(n, 1):>20.2f}")
    n = sum(r[1] for r in rows)
    print(f"{'all':<40} {n:>8} {sum(r[2] for r in rows) / n:>17.2f} {sum(r[3] for r in rows) / n:>20.2f}")


if __name__ == "__main__":
    main()
