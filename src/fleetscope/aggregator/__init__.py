"""The aggregator: merges partial values of a slot across sources, keeps the real-time window.

``aggregator.py`` receives batches and finalises slots, ``window.py`` holds one
instrumentation's slots (who contributed, top keys, lateness), ``holder.py`` is the first level
of a partitioned fleet (the partitions one aggregator holds) and ``owner.py`` the second (an
owned instrumentation's partials, one per partition), ``acks.py`` acknowledges batches to their
agents, ``shards.py`` shares instrumentations and partitions among aggregators by leases,
``follow.py`` learns definitions from the bus, ``replica.py`` is an API server's copy of the
windows. Imports ``model`` and ``bus`` (the
store it is given through its interface); never ``api``, ``agent``, ``sources`` or
``processes``.
"""
