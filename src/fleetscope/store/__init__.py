"""The store: definitions (instrumentations, dashboards, leases) and history, SQLite or PostgreSQL.

Imports only ``fleetscope.model`` (and its own modules); the interface ``base.py`` imports none
of its implementations. Where to start reading:

* the interface: ``base.py`` (the ``Store`` protocol and its records); ``open.py`` opens a
  store from a URL; ``sql.py`` holds every statement, ``sqlite.py`` and ``postgres.py`` the
  two implementations;
* history, as the Prometheus TSDB lays it out: ``history.py`` (writing, reading, the whole),
  ``head.py`` (points buffered before a flush), ``compact.py`` (rollups, merges, retention),
  ``chunkio.py`` and ``cache.py`` (stored chunks cut, read back and kept decoded),
  ``stats.py`` (what is stored, per tier);
* the data: ``block.py`` (points in columns), ``rollup.py`` (exact rollups of blocks),
  ``chunkenc.py`` and ``colenc.py`` (a block's bytes; the format is
  ``docs/format/chunks.md``).
"""
