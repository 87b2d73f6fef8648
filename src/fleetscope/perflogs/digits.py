"""Lines of whole numbers read many at a time with numpy: the fast path of ``vmstat -t``.

A log of a month of 1-second vmstat is 2.6 million lines of integers and a timestamp; read
line by line (``split``, ``float`` per figure, ``int`` per part of the time) a line costs
about 9 us here, most of it Python's per-object work. :func:`stamped_rows` reads a batch of
such lines as one ``uint8`` array (digit runs, their place values summed by
``np.add.reduceat``) and checks every byte that is not a digit, so a batch either is exactly
``figures... YYYY-MM-DD HH:MM:SS`` per line, or the answer is None and the caller reads it
the checked way, line by line (which names the bad line): the fast path never accepts what
the checked one would refuse. :func:`utc_epochs` turns the dates and times into epoch
seconds (days from the civil date, as Howard Hinnant's ``days_from_civil``), None for a
date the calendar does not have.
"""

from __future__ import annotations

import numpy as np

from fleetscope.perflogs.clock import UTC, Clock

SPACE, TAB, NEWLINE, RETURN, DASH, COLON = (ord(c) for c in " \t\n\r-:")
TIME_PARTS = 6  # year, month, day, hour, minute, second
MAX_DIGITS = 18  # an int64 holds every 18-digit number
_POW10 = 10 ** np.arange(MAX_DIGITS, dtype=np.int64)
_SEPARATORS = (DASH, DASH, None, COLON, COLON)  # after the year, month, day, hour, minute
_DATE_DIGITS = (4, 2, 2, 2, 2, 2)
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_ALLOWED = np.zeros(256, bool)  # the bytes a batch may hold
_ALLOWED[[*range(48, 58), SPACE, TAB, RETURN, NEWLINE, DASH, COLON]] = True


def stamped_rows(text: bytes, nlines: int, nfigures: int) -> np.ndarray | None:
    """``(nlines, nfigures + 6)`` int64: each line's figures, then the year, month, day, hour,
    minute and second of its ``YYYY-MM-DD HH:MM:SS``. None unless ``text`` is exactly
    ``nlines`` such lines, each ending with a newline: unsigned whole figures separated by
    blanks, nothing else."""
    width = nfigures + TIME_PARTS
    buf = np.frombuffer(text, np.uint8)
    digit = (buf - np.uint8(48)) < 10
    edges = np.diff(digit.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if len(starts) != nlines * width:
        return None
    lengths = ends - starts
    if lengths.max(initial=0) > MAX_DIGITS:
        return None
    # Every byte that is not a digit: blanks, the line ends, and the date's and time's marks.
    if not _ALLOWED[buf].all() or buf[-1] != NEWLINE:
        return None
    marks = (np.count_nonzero(buf == DASH), np.count_nonzero(buf == COLON))
    if marks != (2 * nlines, 2 * nlines):
        return None
    # Each line holds its own runs: its newline lies after its last run, before the next line's.
    newlines = np.flatnonzero(buf == NEWLINE)
    if len(newlines) != nlines:
        return None
    first, last = starts.reshape(nlines, width)[:, 0], ends.reshape(nlines, width)[:, -1]
    if not ((newlines >= last).all() and (newlines[:-1] < first[1:]).all()):
        return None
    # The date's and time's marks sit right after their parts, one byte each.
    date = ends.reshape(nlines, width)[:, nfigures:]
    for part, mark in enumerate(_SEPARATORS):
        if mark is not None and not (buf[date[:, part]] == mark).all():
            return None
    runs = lengths.reshape(nlines, width)[:, nfigures:]
    if not (runs == np.array(_DATE_DIGITS)).all():
        return None
    # The values: each digit times its place, summed per run.
    digits = (buf[digit] - np.uint8(48)).astype(np.int64)
    place = np.repeat(ends, lengths) - np.flatnonzero(digit) - 1
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    values = np.add.reduceat(digits * _POW10[place], offsets)
    return values.reshape(nlines, width)


def days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of the proleptic Gregorian dates ``y-m-d`` (arrays)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def valid_dates(y: np.ndarray, m: np.ndarray, d: np.ndarray, h: np.ndarray, mi: np.ndarray,
                s: np.ndarray) -> bool:
    """Whether every date and time exists (leap years; seconds below 60)."""
    if not (((m >= 1) & (m <= 12) & (y >= 1970) & (h < 24) & (mi < 60) & (s < 60) & (d >= 1)).all()):
        return False
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    return bool((d <= _MONTH_DAYS[m - 1] + ((m == 2) & leap)).all())


def utc_epochs(parts: np.ndarray) -> np.ndarray | None:
    """Epoch seconds of ``(n, 6)`` year, month, day, hour, minute, second in UTC; None if a
    date does not exist."""
    y, m, d, h, mi, s = parts.T
    if not valid_dates(y, m, d, h, mi, s):
        return None
    return days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + s


def epochs(parts: np.ndarray, clock: Clock) -> np.ndarray | None:
    """Epoch seconds of ``(n, 6)`` local times in ``clock``'s zone, as :meth:`Clock.epoch`
    reads times that increase (each hour's first occurrence: the caller checks that they
    increase, else reads them one by one); None if a date does not exist."""
    if clock.tz is UTC:
        return utc_epochs(parts)
    y, m, d, h, mi, s = parts.T
    if not valid_dates(y, m, d, h, mi, s):
        return None
    hours = days_from_civil(y, m, d) * 24 + h
    _, first, inverse = np.unique(hours, return_index=True, return_inverse=True)
    bases = np.array([clock.hour(*map(int, parts[i, :4])) for i in first], np.int64)
    return bases[inverse] + mi * 60 + s
