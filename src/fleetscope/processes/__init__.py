"""The processes of fleetscope, each assembled from the layers below: ``serve`` (everything
in one process), ``agent``, ``aggregator`` and ``api`` (a fleet), with ``config`` (their typed
configuration, read from flags, environment and TOML) and ``common`` (wiring they share).

The top layer with :mod:`fleetscope.cli`: may import every other package, and nothing below
imports it. The ``fleetscope`` commands only parse arguments and call these modules.
"""
