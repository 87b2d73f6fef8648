"""The agent under hostile instrumentations, in process: budgets, back-off, bounded breakdowns.

A real StatsD source is fed real lines (its own parser and caps) and a real agent ticks
over it; the processes, the bus and the API are exercised in tests/test_hostile.py.
"""

from __future__ import annotations

import math
import time

import pytest

from fleetscope.agent.agent import Agent
from fleetscope.agent.budget import BACKOFF_FIRST, BACKOFF_MAX, DEFAULT_BUDGET, Budgets, parse_budget
from fleetscope.agent.evaluate import CHUNK, OverBudget, Plan
from fleetscope.bus.memory import MemoryBus
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.sources.statsd import StatsdConfig, StatsdSource

SHARDS = 100_000


def _inst(inst_id: int, agent: Agent, body: dict) -> Instrumentation:
    return Instrumentation(id=inst_id, created=0.0, **validate_spec(body, agent.catalog))


def _gauges(src: StatsdSource, n: int) -> dict[str, float]:
    """``n`` gauges ``app.queue`` with distinct ``shard`` tags, sent as lines; their values."""
    sent = {f"s{i:06d}": float(i % 97 + 1) for i in range(n)}
    keys = list(sent)
    for i in range(0, n, 1000):
        src.ingest("\n".join(f"queue:{sent[k]:g}|g|#shard:{k}" for k in keys[i:i + 1000]).encode(), "tcp")
    assert src.dropped == {}, src.dropped
    return sent


@pytest.fixture(scope="module")
def hostile_source() -> StatsdSource:
    src = StatsdSource(StatsdConfig(port=0, max_keys=2 * SHARDS))
    src.sent = _gauges(src, SHARDS)
    return src


def _agent(src: StatsdSource, budget: float, start: float) -> Agent:
    """An agent over ``src`` that knows ``app.jobs``, to tick from ``start`` on, once a second."""
    agent = Agent(MemoryBus(), [src], hostname="h1", budget=budget)
    src.ingest(b"jobs:1|c|#queue:mail")  # the normal instrumentation's metric
    agent.refresh_catalog()
    src.begin_tick(start - 1)  # the tick before: what came before it is not counted at start
    return agent


def _jobs(src: StatsdSource) -> None:
    src.ingest(b"jobs:1|c|#queue:mail\njobs:2|c|#queue:sms")


def test_budget_parsing() -> None:
    assert parse_budget("20ms") == pytest.approx(0.02)
    assert parse_budget(DEFAULT_BUDGET) == DEFAULT_BUDGET
    assert parse_budget("1s") == 1.0
    for bad in ("0.5ms", "2s", "fast", "10MiB"):
        with pytest.raises(InputError) as info:
            parse_budget(bad)
        assert info.value.field == "tick-budget"


def test_back_off_doubles_while_over_and_restarts_after_a_good_tick() -> None:
    budgets = Budgets(0.01)
    now = 1000.0
    backoffs = []
    while len(backoffs) < 9:
        if budgets.paused(7, now):
            now += 1
            continue
        text = budgets.exceeded(7, 0.5, now, stopped=True)
        assert "instrumentation 7 paused" in text and "500 ms" in text and "budget of 10 ms" in text
        resumed = now
        while budgets.paused(7, resumed):
            resumed += 1
        backoffs.append(resumed - now)
        assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(resumed)) in text
        now = resumed
    expected = [min(BACKOFF_FIRST * 2**i, BACKOFF_MAX) for i in range(9)]
    assert backoffs == expected
    budgets.kept(7)
    budgets.exceeded(7, 0.5, now, stopped=False)
    assert budgets.paused(7, now + BACKOFF_FIRST - 1) and not budgets.paused(7, now + BACKOFF_FIRST)


def test_evaluation_stops_at_its_deadline() -> None:
    src = StatsdSource(StatsdConfig(port=0))
    src.ingest(b"jobs:1|c|#queue:mail")
    agent = Agent(MemoryBus(), [src], hostname="h1")
    agent.refresh_catalog()
    inst = _inst(1, agent, {"module": "app", "stat": "jobs", "decomposition": ["queue"],
                            "predicate": 'queue ~ "^q"'})
    plan = Plan(inst, ("queue",), {"hostname": "h1"})
    rows = [(f"q{i}", 1.0) for i in range(300_000)]
    with pytest.raises(OverBudget):
        plan.evaluate(rows, deadline=time.thread_time() + 0.002)
    # A deadline in the past still evaluates the first chunk: a small value always gets through.
    assert plan.evaluate(rows[:CHUNK], deadline=0.0) == {f"q{i}": 1.0 for i in range(CHUNK)}
    assert len(plan.evaluate(rows[:5000])) == 5000


def test_a_hostile_instrumentation_is_paused_and_the_normal_one_is_not(hostile_source) -> None:
    src = hostile_source
    now = 5000.0
    agent = _agent(src, DEFAULT_BUDGET, now)
    agent.enable(_inst(1, agent, {"module": "app", "stat": "queue", "decomposition": ["shard"]}))
    agent.enable(_inst(2, agent, {"module": "app", "stat": "jobs", "decomposition": ["queue"]}))
    seen = {}
    for second in range(40):
        _jobs(src)
        batch = agent.tick(now + second)
        values_of = {p.id: p.value for p in batch.partials}
        assert values_of[2] == {"mail": 1.0, "sms": 2.0}, "the normal one delivers every tick"
        seen[second] = 1 in values_of
        if second == 0:
            warning = agent.warnings[1]
            assert "instrumentation 1 paused on this host" in warning
            assert "over its budget of 50 ms per tick" in warning
            assert f"paused until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now + 5))}" in warning
            assert agent.status().warnings == {"1": warning}, "the status carries it to the API"
        assert 2 not in agent.warnings
    # Reading 100,000 rows alone costs more than the budget: tried at 0, 5, 15 and 35 s, never sent.
    assert agent.budgets.paused_total == 4
    assert not any(seen.values())
    assert "(40 s, doubling" in agent.warnings[1]


def test_a_wide_breakdown_is_bounded_to_the_top_keys(hostile_source) -> None:
    src = hostile_source
    agent = _agent(src, 1.0, 6000.0)  # room for it: the breakdown is bounded, not paused
    agent.enable(_inst(1, agent, {"module": "app", "stat": "queue", "decomposition": ["shard"]}))
    (partial,) = agent.tick(6000.0).partials
    value = values.decode(partial.value, values.DISCRETE)
    assert len(value) == values.AGENT_TOP_K + 1
    sent = src.sent
    top = sorted(sent, key=lambda k: (-sent[k], k))[:values.AGENT_TOP_K]
    assert {k: value[k] for k in top} == {k: sent[k] for k in top}
    assert math.fsum(value.values()) == math.fsum(sent.values())
    assert value[values.OTHER] == math.fsum(sent[k] for k in set(sent) - set(top))
    assert partial.warning == agent.warnings[1]
    assert f"broken down by {SHARDS} values of 'shard'" in partial.warning
    assert f"top {values.AGENT_TOP_K} sent" in partial.warning
    assert agent.budgets.paused_total == 0
