"""The model health check: statistics, the windowed read, storage and its outside effects."""
