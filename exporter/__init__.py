"""Per-process Prometheus exporter for Celery workers: memory read from /proc at scrape time."""
