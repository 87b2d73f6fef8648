"""Sources: each knows a set of metrics and, at a tick, yields the rows of one metric."""
