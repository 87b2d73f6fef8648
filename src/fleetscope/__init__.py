"""fleetscope: cloud analytics for a fleet of hosts, answered every second."""

__version__ = "0.1.0"
