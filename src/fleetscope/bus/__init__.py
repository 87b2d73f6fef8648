"""The bus: control messages and data batches between agents, aggregators and API servers.

``base`` is the interface (:class:`~fleetscope.bus.base.Bus`, errors, subject matching) and
imports no transport; ``messages`` holds the subjects and message schemas; ``memory`` (the
embedded single-process mode) and ``nats`` (a fleet) are the two transports, and ``connect``
picks one from a URL. May import only :mod:`fleetscope.model`.
"""
