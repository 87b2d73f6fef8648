"""sar's text of other sysstat versions, checked in (what the test's own sar cannot print):
sysstat 10 in the en_US locale (12-hour times across midnight, ``devM-N`` devices with
``rd_sec/s``, a ``LINUX RESTART`` and the header sar prints again after it). The expected
figures are worked out here from the file's numbers."""

from __future__ import annotations

import calendar
import io
from pathlib import Path

import pytest

from fleetscope.perflogs import sartext
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.sink import Options

DATA = Path(__file__).parent / "data"
EVENING = calendar.timegm((2024, 3, 4, 23, 50, 1))  # 11:50:01 PM on the banner's date, UTC
FIVE_MIN = 300


class Rows:
    def __init__(self) -> None:
        self.samples: dict[tuple[int, int], dict] = {}
        self.named: str | None = None

    def host(self, name: str) -> None:
        self.named = name

    def add(self, time, interval, layout, values) -> None:
        self.samples.setdefault((time, interval), {}).update(
            {(c.metric, c.key): v for c, v in zip(layout, values, strict=True)})


def test_sysstat_10_in_12_hour_times_across_midnight_and_a_restart() -> None:
    rows = Rows()
    with open(DATA / "sar-10-ampm.txt", "rb") as f:
        sartext.parse(f, "sar-10-ampm.txt", Options(), rows)
    assert rows.named == "db3"
    t = [EVENING + k * FIVE_MIN for k in range(3)]  # 23:50:01, 23:55:01, 00:00:01 (the next day)
    after = EVENING + 20 * 60  # 00:10:01: the header printed again after the restart
    assert sorted(rows.samples) == [(t[0], FIVE_MIN), (t[1], FIVE_MIN), (t[2], FIVE_MIN), (after, FIVE_MIN)]
    user = ("cpu.usage", ("all", "user", "/", "host"))
    # %user x 4 CPUs (the banner's) x 300 s / 100: CPU seconds of the interval.
    for (start, _), pct in zip(sorted(rows.samples), (2.50, 3.00, 4.00, 1.00), strict=True):
        assert rows.samples[start, FIVE_MIN][user] == pytest.approx(pct * 4 * FIVE_MIN / 100)
    disk = rows.samples[t[1], FIVE_MIN]
    assert disk["disk.ops", ("dev8-0", "all")] == pytest.approx(20 * FIVE_MIN)
    assert disk["disk.bytes", ("dev8-0", "read")] == pytest.approx(320 * 512 * FIVE_MIN)
    assert disk["disk.await", ("dev8-0", "all")] == 1.20 and disk["disk.busy", ("dev8-0",)] == 0.80
    assert ("disk.ops", ("all", "read")) not in disk  # no sar -b here, and -d is there


def test_a_zone_and_a_bad_line_in_the_sample() -> None:
    rows = Rows()
    with open(DATA / "sar-10-ampm.txt", "rb") as f:
        sartext.parse(f, "sar.txt", Options(tz="America/New_York"), rows)
    assert min(start for start, _ in rows.samples) == EVENING + 5 * 3600  # EST is UTC-5 in March 4
    text = (DATA / "sar-10-ampm.txt").read_bytes().replace(b"20.00    320.00", b"20.00    3x0.00")
    with pytest.raises(LogError, match=r"^bad.txt: line 16: expected numbers"):
        sartext.parse(io.BytesIO(text), "bad.txt", Options(), Rows())
