"""``iostat`` text output (sysstat 10 to 12: ``iostat -t -x [-k|-m] [-y]``, extended or
not, old names ``await``/``rsec/s`` and new ``r_await``/``rkB/s``).

A report is a timestamp line (``-t``), the ``avg-cpu`` block and the ``Device`` block;
columns are found by their names. Each report covers the time since the one before it: the
first report iostat prints holds averages since boot (unless ``-y``) and only marks the
start. Without ``-t``, ``--start`` (the time of the first report) and ``--interval`` place
the reports. Host and CPU count come from the banner; local times are read in ``--tz``
(default UTC), ISO times (``S_TIME_FORMAT=ISO``) by their own offset.

Mapped (``I`` the interval, ``C`` the banner's CPUs): ``avg-cpu`` -> ``cpu.usage`` of CPU
``all`` (percent x C x I / 100); ``r/s w/s`` -> ``disk.ops``; ``rkB/s wkB/s`` (or
``rMB/s``, ``rsec/s``) -> ``disk.bytes``; ``%util`` -> ``disk.busy``; ``r_await
w_await`` (or ``await``, direction ``all``) -> ``disk.await``.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetscope.perflogs import banner as banners
from fleetscope.perflogs.clock import Clock, clock_for
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.metrics import ALL, HOST_CONTAINER, HOST_RUNTIME
from fleetscope.perflogs.sink import Column, Layout, Options, Sink

_CPU = {"%user": "user", "%nice": "nice", "%system": "system", "%iowait": "iowait", "%steal": "steal",
        "%idle": "idle"}
# device column -> (metric, direction, factor, per interval)
_DEV = {
    "r/s": ("disk.ops", "read", 1.0, True), "w/s": ("disk.ops", "write", 1.0, True),
    "rkB/s": ("disk.bytes", "read", 1024.0, True), "wkB/s": ("disk.bytes", "write", 1024.0, True),
    "rMB/s": ("disk.bytes", "read", 1048576.0, True), "wMB/s": ("disk.bytes", "write", 1048576.0, True),
    "rsec/s": ("disk.bytes", "read", 512.0, True), "wsec/s": ("disk.bytes", "write", 512.0, True),
    "%util": ("disk.busy", None, 1.0, False),
    "r_await": ("disk.await", "read", 1.0, False), "w_await": ("disk.await", "write", 1.0, False),
    "await": ("disk.await", ALL, 1.0, False),
}


class _Report:
    def __init__(self, time: int | None) -> None:
        self.time = time
        self.cpu: list[tuple[str, float]] = []
        self.devices: list[tuple[str, list[float]]] = []


def parse(lines: Iterable[bytes], name: str, opts: Options, sink: Sink) -> Clock:
    """Read iostat output from ``lines`` into ``sink``."""
    clock = clock_for(opts.tz, name)
    cpus = opts.cpus or 1
    date: tuple[int, int, int] | None = None
    cpu_names: list[str] = []
    dev_names: list[str] = []
    block = None  # "cpu" (the next line holds avg-cpu), "dev" (device lines follow)
    reports = 0
    state = {"prev": None, "report": None}
    layouts: dict[Layout, Layout] = {}

    def emit(rep: _Report | None, lineno: int) -> None:
        if rep is None or rep.time is None:
            return
        prev = state["prev"]
        state["prev"] = rep.time
        if prev is None or rep.time <= prev:
            return  # the first report (since boot), or the clock went back
        interval = rep.time - prev
        cols, vals = [], []
        for mode, pct in rep.cpu:
            cols.append(Column("cpu.usage", (ALL, mode, HOST_CONTAINER, HOST_RUNTIME)))
            vals.append(pct * cpus * interval / 100.0)
        for dev, nums in rep.devices:
            for col_name, x in zip(dev_names, nums, strict=True):
                spec = _DEV.get(col_name)
                if spec is None:
                    continue
                metric, direction, factor, per = spec
                cols.append(Column(metric, (dev,) if direction is None else (dev, direction)))
                vals.append(x * factor * (interval if per else 1.0))
        if cols:
            key = tuple(cols)
            sink.add(rep.time - interval, interval, layouts.setdefault(key, key), vals)

    def start_report(time: int | None, lineno: int) -> None:
        nonlocal reports
        emit(state["report"], lineno)
        if time is None:
            if opts.start is None or not opts.interval:
                raise LogError(name, lineno, "iostat output without timestamps (no -t): give --start "
                               "and --interval")
            time = opts.start + reports * opts.interval
        reports += 1
        state["report"] = _Report(time)

    stamped = False
    for lineno, raw in enumerate(lines, 1):
        p = raw.split()
        if not p:
            block = None
            continue
        try:
            text = [x.decode() for x in p]
        except UnicodeDecodeError:
            raise LogError(name, lineno, "not iostat output (not text)") from None
        if block == "cpu":
            try:
                report = state["report"]
                report.cpu = [(_CPU[n], float(x)) for n, x in zip(cpu_names, text, strict=True) if n in _CPU]
            except ValueError:
                raise LogError(name, lineno, f"expected {len(cpu_names)} CPU figures, found "
                               f"{' '.join(text)[:80]!r}") from None
            block = None
            continue
        if block == "dev":
            if len(text) != len(dev_names) + 1:
                cut = " (truncated?)" if len(text) <= len(dev_names) else ""
                raise LogError(name, lineno, f"expected a device and {len(dev_names)} figures, found "
                               f"{len(text)} fields{cut}")
            try:
                state["report"].devices.append((text[0], [float(x) for x in text[1:]]))
            except ValueError:
                raise LogError(name, lineno, f"expected numbers, found {' '.join(text)[:80]!r}") from None
            continue
        if date is None and text[0] == "Linux":
            b = banners.banner(raw)
            if b is None:
                raise LogError(name, lineno, "not an iostat banner")
            date, cpus = b.date, opts.cpus or b.cpus
            sink.host(b.host)
            continue
        if text[0] == "avg-cpu:":
            if not stamped:
                start_report(None, lineno)
            cpu_names = text[1:]
            block = "cpu"
            continue
        if text[0] in ("Device", "Device:"):
            if state["report"] is None or (not stamped and state["report"].devices):
                start_report(None, lineno)
            dev_names = text[1:]
            block = "dev"
            continue
        stamp = _stamp(text, clock)
        if stamp is None:
            raise LogError(name, lineno, f"not iostat output: {' '.join(text)[:80]!r}")
        stamped = True
        start_report(stamp, lineno)
    emit(state["report"], 0)
    return clock


def _stamp(text: list[str], clock: Clock) -> int | None:
    """Epoch seconds of a timestamp line (``MM/DD/YY HH:MM:SS [AM|PM]`` or ISO), else None."""
    try:
        if len(text) == 1:
            return banners.iso_stamp(text[0])
        if len(text) in (2, 3):
            y, mo, d = banners.date(text[0])
            h, mi, s = banners.clock(text[1], text[2] if len(text) == 3 else None)
            return clock.epoch(y, mo, d, h, mi, s)
    except ValueError:
        return None
    return None
