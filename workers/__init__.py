"""The Celery side of celery-membench: scenarios, the process_batch task and its instrumentation."""
