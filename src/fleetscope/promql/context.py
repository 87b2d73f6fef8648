"""The state of one evaluation: the grid of steps, the storage, the limits and what is spent."""

from __future__ import annotations

import time

import numpy as np

from fleetscope.promql.errors import TIMED_OUT, TIMEOUT, TOO_MANY_SAMPLES, Limits, PromQLError, execution
from fleetscope.promql.storage import Storage


class Budget:
    """Samples held in memory at once, as Prometheus counts them against ``--query.max-samples``:
    each node takes what its result holds and gives back what its operands held."""

    __slots__ = ("current", "limit", "peak")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0
        self.peak = 0

    def take(self, n: int) -> None:
        self.current += n
        if self.current > self.limit:
            raise execution(TOO_MANY_SAMPLES)
        self.peak = max(self.peak, self.current)

    def release(self, n: int) -> None:
        self.current -= n


class Context:
    """Where a node is evaluated: at ``steps`` (int64 ms, ``start_ms`` to ``end_ms`` every
    ``step_ms``); ``query_start_ms``/``query_end_ms`` are what ``@ start()``/``@ end()`` mean
    (the outer query's, also inside a subquery)."""

    __slots__ = ("budget", "deadline", "end_ms", "limits", "query_end_ms", "query_start_ms", "start_ms",
                 "step_ms", "steps", "storage")

    def __init__(self, storage: Storage, limits: Limits, start_ms: int, end_ms: int, step_ms: int,
                 deadline: float | None = None, budget: Budget | None = None,
                 query_range: tuple[int, int] | None = None) -> None:
        self.storage = storage
        self.limits = limits
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.step_ms = step_ms
        n_steps = (end_ms - start_ms) // step_ms + 1 if step_ms > 0 else 1
        self.steps = start_ms + step_ms * np.arange(n_steps, dtype=np.int64)
        self.deadline = time.monotonic() + limits.timeout_s if deadline is None else deadline
        self.budget = Budget(limits.max_samples) if budget is None else budget
        self.query_start_ms, self.query_end_ms = query_range or (start_ms, end_ms)

    @property
    def k(self) -> int:
        """The number of steps."""
        return len(self.steps)

    def check(self) -> None:
        """Raise the timeout error once the query's time is up (called between nodes and series)."""
        if time.monotonic() > self.deadline:
            raise PromQLError(TIMEOUT, TIMED_OUT)

    def inner(self, start_ms: int, end_ms: int, step_ms: int) -> Context:
        """A context for a subquery: its own steps, the same storage, limits, clock and budget."""
        return Context(self.storage, self.limits, start_ms, end_ms, step_ms, self.deadline, self.budget,
                       (self.query_start_ms, self.query_end_ms))
