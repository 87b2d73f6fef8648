"""Parsers of other tools' performance logs: sysstat data files (through ``sadf -j``), the
text output of ``vmstat -t``, ``iostat -t -x``, ``mpstat`` and ``sar``, and CSV files with a
time column.

Each parser streams its input (bounded memory, whatever the file's size) and hands a
:class:`~fleetscope.perflogs.sink.Sink` one sample per interval of the log: the interval's
start (epoch seconds, UTC), its length, and one value per *column* of a
:data:`~fleetscope.perflogs.sink.Layout` (a metric and the values of its fields, as the
live sources give them: ``cpu.usage`` by ``cpu`` and ``mode``, ``disk.ops`` by ``disk``
and ``direction``...). A value is what a live source's row would measure over that
interval: an interval metric's activity over the whole interval (CPU seconds, bytes), a
point metric's level. Metrics that only logs know (run queue, swapping, disk latency) are
defined in :mod:`fleetscope.perflogs.metrics`.

Bad input raises :class:`~fleetscope.perflogs.errors.LogError` with the file name, the
line (or record) and the reason. A layer beside :mod:`fleetscope.formats`: imports only
:mod:`fleetscope.model`, numpy and the standard library.

* ``errors.py``: LogError;
* ``metrics.py``: the metrics imports write and the fields of each;
* ``sink.py``: Layout, Sink, Options (what a parser is given);
* ``clock.py``: local times of a log to epoch seconds (time zones, DST folds);
* ``digits.py``: lines of whole numbers and a time read many at once with numpy (vmstat's
  fast path);
* ``vmstat.py``, ``iostat.py``, ``mpstat.py``, ``sartext.py``: text formats;
* ``csvlog.py``: CSV, with a mapping of columns to metrics and fields;
* ``csvevents.py``: CSV of one event per row (JMeter, ``ab -g``): counts and distributions;
* ``sysstat.py``: sysstat data files read through ``sadf -j`` (or its JSON given as is);
* ``registry.py``: the formats by name.
"""
