"""`fleetscope agent`: collect on this host and publish to the fleet's bus (NATS).

The host's sources (and StatsD, OTLP, scrape, remote write when configured) feed an agent that
buffers its batches while the bus is away; SIGTERM flushes what it can and exits.
"""

from __future__ import annotations

import asyncio
import socket
from typing import NamedTuple

from fleetscope.agent.agent import Agent
from fleetscope.bus.base import Bus
from fleetscope.bus.connect import connect_bus
from fleetscope.bus.messages import agent_inbox
from fleetscope.processes.common import run_until_signalled
from fleetscope.processes.config import AgentConfig, IngestConfig
from fleetscope.sources.base import Source
from fleetscope.sources.registry import local_sources
from fleetscope.sources.selfmetrics import SelfSource

STOP_TIMEOUT = 5.0  # seconds for the last batches to go out on SIGTERM


def ingest_sources(ingest: IngestConfig) -> list[Source]:
    """The StatsD listener, OTLP receiver, Prometheus scraper and remote-write receiver ``ingest``
    asks for (started with the agent)."""
    sources: list[Source] = []
    if ingest.statsd is not None:
        from fleetscope.sources.statsd import StatsdSource

        sources.append(StatsdSource(ingest.statsd))
    if ingest.otlp is not None:
        from fleetscope.sources.otlp import OtlpSource

        sources.append(OtlpSource(ingest.otlp))
    if ingest.remote_write is not None:
        from fleetscope.sources.remote_write import RemoteWriteSource

        sources.append(RemoteWriteSource(ingest.remote_write))
    if ingest.scrape:
        from fleetscope.sources.scrape import ScrapeSource

        sources.append(ScrapeSource(list(ingest.scrape), max_metrics=ingest.max_metrics,
                                    max_keys=ingest.max_keys))
    return sources


class AgentProcess(NamedTuple):
    agent: Agent
    bus: Bus


def assemble(config: AgentConfig) -> AgentProcess:
    """The agent and its bus; InputError (naming ``bus``, ``hostname``, ``label``, ...) if the
    config is refused. Nothing runs yet."""
    name = config.hostname or socket.gethostname()
    # The connection's name shows in the server's monitoring (connz): which host is which.
    bus = connect_bus(config.bus_url, name=f"fleetscope agent {name}", inbox_prefix=agent_inbox(name),
                      **config.nats)
    own = SelfSource(api=False)  # fleetscope.agent_tick
    sources = [*local_sources(config.container_labels), own, *ingest_sources(config.ingest)]
    agent = Agent(bus, sources, hostname=config.hostname, labels=config.labels, budget=config.tick_budget,
                  buffer_bytes=config.buffer_bytes)
    agent.on_tick = own.record_tick
    return AgentProcess(agent, bus)


async def main(process: AgentProcess, stop: asyncio.Event) -> None:
    """Run the agent until ``stop`` is set, then flush and close."""
    agent, bus = process
    task = asyncio.get_running_loop().create_task(agent.run())
    await stop.wait()
    agent.stop()
    try:
        await asyncio.wait_for(task, STOP_TIMEOUT)
    except TimeoutError:  # still waiting for the bus at start: nothing to flush
        task.cancel()
    agent.close()
    await bus.close()


def run(process: AgentProcess) -> None:
    """Run until SIGTERM or SIGINT."""
    run_until_signalled(lambda stop: main(process, stop))
