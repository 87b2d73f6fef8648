"""A CPU budget per instrumentation per tick, and the back-off of those that exceed it.

Nothing a caller sends may make an agent do unbounded work: RE2 keeps each regex
linear, :mod:`fleetscope.model.predicate` bounds a predicate's size, and this
module bounds the time. Each tick the agent measures what each instrumentation
costs: its evaluation (predicate, decomposition, folding, encoding) plus its share
of reading its metric (the read divided among the instrumentations of that metric
in the tick). An evaluation is also stopped at the budget
(:class:`fleetscope.agent.evaluate.OverBudget`), so one tick of a hostile
instrumentation costs at most about its budget plus its share of the read.

One that exceeds its budget is paused on this host with a warning (the host's
warnings in the API's ``/hosts`` answer and in ``fleetscope hosts``) and tried
again after a back-off: :data:`BACKOFF_FIRST` seconds, doubled at each tick it
still exceeds, up to :data:`BACKOFF_MAX`; a tick within budget forgets the
back-off. While paused, it sends no value at all (the aggregator sees fewer
sources than expected, not a zero), and costs nothing.

Costs are CPU time of the thread that ticks (``time.thread_time``), not wall time:
on a machine whose cores are busy with other work, a well-behaved instrumentation
is not paused for the time it waited its turn. Measured: ``thread_time`` costs
about 0.3 us per call; proc.cpu by execname over 120 processes about 1 ms per tick.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fleetscope.model.errors import InputError
from fleetscope.model.types import SECONDS, parse_quantity

# CPU per instrumentation per tick: twenty times what a breakdown of proc.cpu costs on a host
# of a few hundred processes, and few enough that a dozen hostile instrumentations cannot push
# a tick past its second.
DEFAULT_BUDGET = 0.05
MIN_BUDGET, MAX_BUDGET = 0.001, 1.0  # seconds; a tick is a second
BACKOFF_FIRST = 5  # seconds paused after the first tick over budget
BACKOFF_MAX = 300  # the back-off doubles up to this


def parse_budget(text: str | float, field: str = "tick-budget") -> float:
    """A budget such as ``"50ms"`` (or a number of seconds) in seconds; InputError naming
    ``field`` outside [1 ms, 1 s].

    >>> parse_budget("20ms")
    0.02
    """
    seconds = parse_quantity(str(text), SECONDS, field)
    if not MIN_BUDGET <= seconds <= MAX_BUDGET:
        raise InputError(field, f"{text!r} is outside 1ms..1s (CPU per instrumentation per tick)")
    return seconds


@dataclass
class _Pause:
    until: float  # epoch seconds: tried again at the first tick from then on
    backoff: int  # seconds of the last pause


class Budgets:
    """Which instrumentations are paused on this host, until when, and why."""

    def __init__(self, limit: float = DEFAULT_BUDGET) -> None:
        assert MIN_BUDGET <= limit <= MAX_BUDGET, limit
        self.limit = limit
        self._pauses: dict[int, _Pause] = {}
        self.paused_total = 0  # pauses since start

    def paused(self, inst_id: int, now: float) -> bool:
        """Whether ``inst_id`` sits this tick out."""
        pause = self._pauses.get(inst_id)
        return pause is not None and now < pause.until

    def exceeded(self, inst_id: int, cost: float, now: float, stopped: bool) -> str:
        """Pause ``inst_id``, which cost ``cost`` seconds of CPU in the tick at ``now`` (``stopped``:
        its evaluation was cut off at the budget); the warning that says so."""
        pause = self._pauses.get(inst_id)
        backoff = BACKOFF_FIRST if pause is None else min(2 * pause.backoff, BACKOFF_MAX)
        until = float(int(now) + backoff)
        self._pauses[inst_id] = _Pause(until, backoff)
        self.paused_total += 1
        stop = " before it was stopped" if stopped else ""
        return (f"instrumentation {inst_id} paused on this host: it used {cost * 1e3:.0f} ms of CPU in "
                f"one tick{stop}, over its budget of {self.limit * 1e3:.0f} ms per tick; paused until "
                f"{_iso(until)} ({backoff} s, doubling while it stays over budget, up to {BACKOFF_MAX} s)")

    def kept(self, inst_id: int) -> None:
        """``inst_id`` stayed within its budget: a later excess starts the back-off afresh."""
        self._pauses.pop(inst_id, None)

    def forget(self, inst_id: int) -> None:
        self._pauses.pop(inst_id, None)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
