"""What sysstat's text tools (``iostat``, ``mpstat``, ``sar``) print first and around their
figures: the banner ``Linux 6.1.0-18-amd64 (web1)  03/04/24  _x86_64_  (8 CPU)`` and their
dates and times, in the C/en_US locale (``MM/DD/YY``, ``HH:MM:SS`` with or without
``AM``/``PM``) or ISO (``S_TIME_FORMAT=ISO``: ``2024-03-04``, ``2024-03-04T14:00:01+0100``).
Other locales' day-first dates are not told apart from month-first ones: run the tools with
``LC_ALL=C`` or ``S_TIME_FORMAT=ISO``.
"""

from __future__ import annotations

import calendar
import re
from typing import NamedTuple

_BANNER = re.compile(rb"^\S+\s+\S+\s+\((?P<host>[^)]*)\)\s+(?P<date>\S+)\s+\S+\s+\((?P<cpus>\d+)\s+CPU\)")
_ISO_STAMP = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)([+-])(\d\d):?(\d\d)$")


class Banner(NamedTuple):
    host: str
    date: tuple[int, int, int]
    cpus: int


def banner(line: bytes) -> Banner | None:
    """The banner's host, date and CPU count, or None if ``line`` is not a banner."""
    m = _BANNER.match(line.strip())
    if not m:
        return None
    return Banner(m["host"].decode(errors="replace"), date(m["date"].decode()), int(m["cpus"]))


def date(text: str) -> tuple[int, int, int]:
    """``(year, month, day)`` of ``MM/DD/YY``, ``MM/DD/YYYY`` or ``YYYY-MM-DD``; ValueError else."""
    if "-" in text:
        y, m, d = (int(x) for x in text.split("-"))
    else:
        m, d, y = (int(x) for x in text.split("/"))
        if y < 100:
            y += 2000
    if not (1 <= m <= 12 and 1 <= d <= 31 and 1970 <= y <= 9999):
        raise ValueError(f"not a date: {text!r}")
    return y, m, d


def clock(text: str, half: str | None = None) -> tuple[int, int, int]:
    """``(h, m, s)`` of ``HH:MM:SS`` (``half``: ``AM``/``PM`` of a 12-hour clock); ValueError."""
    h, m, s = (int(x) for x in text.split(":"))
    if half is not None:
        if half not in ("AM", "PM") or not 1 <= h <= 12:
            raise ValueError(f"not a time: {text} {half}")
        h = h % 12 + (12 if half == "PM" else 0)
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 61):
        raise ValueError(f"not a time: {text!r}")
    return h, m, s


def iso_stamp(text: str) -> int | None:
    """Epoch seconds of ``2024-03-04T14:00:01+0100`` (ISO with an offset), else None."""
    m = _ISO_STAMP.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(m[i]) for i in range(1, 7))
    offset = (int(m[8]) * 3600 + int(m[9]) * 60) * (1 if m[7] == "+" else -1)
    return calendar.timegm((y, mo, d, h, mi, s)) - offset
