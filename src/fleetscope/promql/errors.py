"""The one error of the engine, with Prometheus' error types, and the limits of one query."""

from __future__ import annotations

from typing import NamedTuple

BAD_DATA = "bad_data"  # the query is wrong, or asks for what fleetscope does not evaluate
EXECUTION = "execution"  # the query is right but cannot be answered (samples limit, duplicates)
TIMEOUT = "timeout"

TOO_MANY_SAMPLES = "query processing would load too many samples into memory in query execution"
TIMED_OUT = "query timed out in expression evaluation"
SAME_LABELSET = "vector cannot contain metrics with the same labelset"


class PromQLError(Exception):
    """A query that cannot be answered: ``error_type`` is Prometheus' (``bad_data``,
    ``execution``, ``timeout``), ``message`` says why, as Prometheus words it where it has
    the same error."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class Limits(NamedTuple):
    """What one query may use, Prometheus' defaults.

    ``max_samples`` is ``--query.max-samples``: samples held in memory at once (points of the
    intermediate results and samples of the range selectors being read); ``timeout_s`` is
    ``--query.timeout``, checked between nodes and between series; ``lookback_ms`` is
    ``--query.lookback-delta``.
    """

    max_samples: int = 50_000_000
    timeout_s: float = 120.0
    lookback_ms: int = 300_000


def unsupported(what: str) -> PromQLError:
    """``bad_data`` for a part of PromQL fleetscope does not evaluate."""
    return PromQLError(BAD_DATA, f"{what} is not supported by fleetscope")


def execution(message: str) -> PromQLError:
    return PromQLError(EXECUTION, message)
