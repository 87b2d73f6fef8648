"""The bus: control messages and data batches between agents, aggregators and API servers.

One small interface (:class:`fleetscope.bus.base.Bus`), two transports: ``memory``
for the embedded single-process mode and NATS for a fleet.
"""
