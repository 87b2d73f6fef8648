"""The agent: runs the instrumentations enabled on its host over the sources, every tick,
within each one's time budget, and publishes one batch per tick.

``agent.py`` is the loop (learn instrumentations, tick, publish, buffer while the bus is
away), ``evaluate.py`` compiles predicates and breakdowns into plans over rows,
``budget.py`` pauses an instrumentation over its budget, ``outbox.py`` buffers batches.
Imports ``model``, ``sources`` (their interface and registry) and ``bus`` (its interface and
messages); never ``api``, ``store`` or ``processes``.
"""
