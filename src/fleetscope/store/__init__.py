"""The store: definitions (instrumentations, dashboards) and history, SQLite or PostgreSQL."""
