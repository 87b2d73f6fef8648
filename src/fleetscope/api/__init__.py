"""The HTTP API of fleetscope: one layer, given its services, that answers HTTP.

``app.py`` assembles :func:`~fleetscope.api.app.create_app` from ``routes/`` (one
module per resource); ``params.py``, ``bodies.py``, ``errors.py`` and
``services.py`` are what the routes share; ``queries.py`` answers ranges from the
window and the history; ``heatmap/``, ``export.py``, ``exposition.py`` and
``promproto.py`` turn data points into matrices, images and text; ``stream.py``
is the live event stream; ``control.py`` the control plane.

May import model, store, the bus interfaces, aggregator and formats; never agent,
sources or processes: the processes that serve it are assembled in ``processes/``.
"""
