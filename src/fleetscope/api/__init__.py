"""The HTTP API of fleetscope: app, schemas, heatmap rendering, live stream, auth."""
