"""PromQL evaluated on NumPy: the engine behind the ``/prometheus`` query API.

Expressions are parsed by ``promql-parser`` (Prometheus' own grammar, in Rust) and evaluated
here with the semantics of Prometheus 2.42, checked number by number against a real
Prometheus 2.42 in ``tests/test_promql_reference.py``. What fleetscope does not evaluate
is refused with Prometheus' ``bad_data`` error, never answered with a wrong number.

Modules, one concern each:

- ``matchers``: label matchers (``=``, ``!=``, ``=~``, ``!~``; RE2, fully anchored) and series
  selectors.
- ``storage``: what the engine reads (``Series``, the ``Storage`` protocol) and an in-memory
  ``Storage``.
- ``errors``: ``PromQLError`` with Prometheus' error types, and ``Limits`` (samples, timeout,
  lookback).
- ``engine``: ``instant`` and ``range_query``, the entry points; the walk of the syntax tree.
- ``vector``: the data layout, a block of series over the grid of evaluation steps.
- ``selectors``, ``functions``, ``aggregations``, ``binary``, ``histograms``: the parts of the
  language.
- ``result``: the answer as the ``data`` field of Prometheus' HTTP API.

This package may import only NumPy, ``promql_parser``, ``re2``, the standard library and
``fleetscope.model``: it knows nothing of instrumentations, stores or HTTP (the API adapts
fleetscope's history to ``storage.Storage``).
"""
