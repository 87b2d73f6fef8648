"""The aggregator: merges partial values of a slot across sources, keeps the real-time window."""
