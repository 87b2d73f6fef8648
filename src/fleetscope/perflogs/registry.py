"""The log formats by the name ``fleetscope import FORMAT`` and the API take.

``parse(FORMAT, stream, name, options, sink, path)`` reads one file: ``stream`` a binary
file positioned at its start, ``name`` what errors call it, ``path`` where it lies (sadf
reads sysstat data files itself).
"""

from __future__ import annotations

from typing import IO

from fleetscope.perflogs import csvevents, csvlog, iostat, mpstat, sartext, sysstat, vmstat
from fleetscope.perflogs.clock import Clock
from fleetscope.perflogs.sink import Options, Sink

FORMATS = ("sysstat", "vmstat", "iostat", "mpstat", "sar-text", "csv")
# Formats whose files name their host (the others need --host).
NAMES_HOST = ("sysstat", "iostat", "mpstat", "sar-text")


def parse(fmt: str, stream: IO[bytes], name: str, opts: Options, sink: Sink,
          path: str | None = None) -> Clock:
    """Read one file of format ``fmt`` into ``sink``; LogError on bad input."""
    if fmt == "sysstat":
        return sysstat.parse(stream, name, opts, sink, path)
    if fmt == "vmstat":
        return vmstat.parse(stream, name, opts, sink)
    if fmt == "iostat":
        return iostat.parse(stream, name, opts, sink)
    if fmt == "mpstat":
        return mpstat.parse(stream, name, opts, sink)
    if fmt == "sar-text":
        return sartext.parse(stream, name, opts, sink)
    if fmt == "csv":
        read = csvevents.parse if csvlog.is_events(opts.mapping) else csvlog.parse
        return read(stream, name, opts, sink)
    raise ValueError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
