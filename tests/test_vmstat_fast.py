"""vmstat's fast path (figures read many lines at a time with numpy, perflogs/digits.py) gives
what the checked path (line by line) gives, value for value, and leaves every refusal and
every clock change to it: the same samples, the same errors, the same line numbers."""

from __future__ import annotations

import io
import os
import subprocess

import numpy as np
import pytest

from fleetscope.perflogs import digits, vmstat
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.sink import Options

HEADER = ("procs -----------memory---------- ---swap-- -----io---- -system-- -------cpu------- "
          "-----timestamp-----\n r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy "
          "id wa st gu                 {zone}\n")


class Samples:
    """A sink that keeps every sample as (start, interval, {column: value}), scaled."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, dict]] = []
        self.blocks = 0

    def host(self, name: str) -> None:
        pass

    def add(self, time, interval, layout, values) -> None:
        raw = np.asarray(values, float)[list(layout.take)] * np.array(layout.factor)
        raw[np.array(layout.per)] *= interval
        self.rows.append((int(time), int(interval), dict(zip(layout, raw.tolist(), strict=True))))

    def add_block(self, times, intervals, layout, values) -> None:
        self.blocks += 1
        for t, i, v in zip(times.tolist(), intervals.tolist(), values, strict=True):
            self.add(t, i, layout, v)


def _log(lines: int, zone: str = "UTC", start: tuple = (2024, 3, 31, 0, 59, 0), every: int = 50) -> bytes:
    import datetime as dt
    from zoneinfo import ZoneInfo

    tz = dt.UTC if zone == "UTC" else ZoneInfo(zone)
    t0 = int(dt.datetime(*start, tzinfo=tz).timestamp())
    out = []
    for i in range(lines):
        if i % every == 0:
            out.append(HEADER.format(zone=zone))
        local = dt.datetime.fromtimestamp(t0 + i, tz)
        out.append(f"{i % 5:2d} {i % 2:2d}      0 {8000000 + 7 * i:7d}  12345 {4000000 - i:7d}    0    0 "
                   f"{(i * 37) % 40000:5d} {i % 900:5d} {300 + i % 97:4d} {500 + i % 91:4d} {i % 60:2d} "
                   f"{i % 20:2d} {40 - i % 40:2d}  0  0  0 {local:%Y-%m-%d %H:%M:%S}\n")
    return "".join(out).encode()


def _both(text: bytes, monkeypatch, opts: Options = Options(cpus=4)):  # noqa: B008
    def run():
        sink = Samples()
        try:
            clock = vmstat.parse(io.BytesIO(text), "vm.log", opts, sink)
        except LogError as exc:
            return str(exc)
        return sink.rows, clock.backwards

    fast = run()
    with monkeypatch.context() as m:
        m.setattr(digits, "stamped_rows", lambda *a: None)  # every batch the checked way
        checked = run()
    return fast, checked


def test_the_fast_path_reads_what_the_checked_path_reads(monkeypatch) -> None:
    text = _log(3000)
    fast, checked = _both(text, monkeypatch)
    assert fast == checked and len(fast[0]) == 2999
    sink = Samples()
    vmstat.parse(io.BytesIO(text), "vm.log", Options(cpus=4), sink)
    assert sink.blocks >= 1 and len(sink.rows) == 2999  # the fast path did read them
    # Read in small pieces: batches end mid-file, headers fall between them.
    monkeypatch.setattr(vmstat, "READ_SIZE", 777)
    again, _ = _both(text, monkeypatch)
    assert again == fast


def test_a_summer_time_fold_is_the_clocks_business(monkeypatch) -> None:
    # 2024-10-27 in Paris: 02:00-03:00 twice; the times printed go back an hour.
    text = _log(5000, "Europe/Paris", (2024, 10, 27, 2, 0, 0))
    fast, checked = _both(text, monkeypatch, Options(cpus=4, tz="Europe/Paris"))
    assert fast == checked
    starts = [t for t, _, _ in fast[0]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts) == 4999


@pytest.mark.parametrize("bad, reason", [
    (b" 1  0      0 8000000  12345 4000000    0    0  x   0  300  500 10  5 85  0  0  0 "
     b"2024-03-31 01:09:00\n", "line 613: expected numbers"),
    (b" 1  0      0 8000000  12345 4000000    0    0  1   0  300  500 10  5 85  0  0  0 "
     b"2024-03-31 01:09\n", "line 613: expected numbers and a 'YYYY-MM-DD HH:MM:SS' time"),
    (b" 1  0      0 8000000  12345 4000000    0    0\n", "line 613: expected 20 fields"),
    (b" 1  0      0 8000000  12345 4000000    0    0  1   0  300  500 10  5 85  0  0  0 "
     b"2024-02-30 01:09:00\n", "line 613: expected numbers"),
])
def test_refusals_name_the_same_line(monkeypatch, bad: bytes, reason: str) -> None:
    lines = _log(1000).splitlines(keepends=True)
    lines[612] = bad
    fast, checked = _both(b"".join(lines), monkeypatch)
    assert fast == checked and f"vm.log: {reason}" in fast


def test_real_vmstat_output_both_ways(monkeypatch) -> None:
    out = subprocess.run(["vmstat", "-t", "-n", "1", "3"], capture_output=True, check=True,
                         env={**os.environ, "LC_ALL": "C", "TZ": "UTC"}).stdout
    fast, checked = _both(out, monkeypatch)
    assert fast == checked and len(fast[0]) == 2


def test_stamped_rows_takes_only_plain_figures_and_a_time() -> None:
    line = b" 3  1 0 12 2024-02-29 23:59:59\n"
    rows = digits.stamped_rows(line * 2, 2, 4)
    assert rows.tolist() == [[3, 1, 0, 12, 2024, 2, 29, 23, 59, 59]] * 2
    assert digits.utc_epochs(rows[:, 4:]).tolist() == [1709251199] * 2
    for bad in (b" 3  1 0 1.5 2024-02-29 23:59:59\n", b"-3  1 0 12 2024-02-29 23:59:59\n",
                b" 3  1 0 12 2024/02/29 23:59:59\n", b" 3  1 0 12 2024-02-29 23:59\n",
                b" 3  1 0 12 13 2024-02-29 23:59:59\n", b" 3  1 0 12 2024-02-29 23:59:59 PM\n"):
        assert digits.stamped_rows(line + bad, 2, 4) is None, bad
    assert digits.stamped_rows(line[:-1], 1, 4) is None  # no newline at the end
    assert digits.utc_epochs(np.array([[2023, 2, 29, 0, 0, 0]])) is None
