"""Sources: each knows a set of metrics and, at a tick, yields the rows of one metric.

One module (or, for the cgroup source, one package) per source: ``host``, ``proc``, ``cgroup/``,
``virt``, ``statsd``, ``otlp``, ``scrape``, ``selfmetrics``; ``base.py`` is the interface the
agent calls (``Source``, ``Rows``) and ``registry.py`` picks the local ones. Shared helpers:
``procfs.py`` (reading kernel files), ``containers.py`` (container names from cgroup paths),
``container_cpu.py`` (CPU time split by container). Imports only ``fleetscope.model``.
"""
