"""Codecs of other projects' wire formats (the Prometheus protobuf exposition, ...).

Shared by the sources that read them and the API that writes them, so neither
imports the other. Imports only :mod:`fleetscope.model`.
"""
