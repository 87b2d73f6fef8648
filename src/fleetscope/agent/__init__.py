"""The agent: runs the instrumentations enabled on its host over the sources, every tick."""
