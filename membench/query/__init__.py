"""`membench report`'s engine: read the runs back from Prometheus's HTTP API (read-only)."""
