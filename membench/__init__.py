"""celery-membench: memory and duration of Celery workers per pool and in-task concurrency model."""
