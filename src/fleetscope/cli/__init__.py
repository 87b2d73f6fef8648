"""The ``fleetscope`` command (entry point :data:`fleetscope.cli.main.app`).

``client`` is the one HTTP client of the public API (base URL, token, TLS, errors as one
:class:`~fleetscope.cli.client.ApiError`); ``format`` turns numbers, units and times into
text; ``views`` draws tables, sparklines and heatmaps with rich; ``commands/`` holds the
commands, one module per noun (``commands/__init__.py`` lists them and says where new ones go).

The top layer with :mod:`fleetscope.processes`. The client commands talk to a server only
over HTTP and import only :mod:`fleetscope.model` (never the API server); ``commands/servers``
hands the long-running processes to :mod:`fleetscope.processes`, and ``store stats --store``
reads a store through :mod:`fleetscope.store`.
"""
