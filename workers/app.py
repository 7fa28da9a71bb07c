"""The Celery app: JSON only, Redis broker and result backend from MEMBENCH_BROKER_URL."""

from __future__ import annotations

import os

from celery import Celery

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def broker_url_from_env() -> str:
    return os.environ.get("MEMBENCH_BROKER_URL", DEFAULT_BROKER_URL)


app = Celery("membench", include=["membench.workers.tasks"])
app.conf.update(
    broker_url=broker_url_from_env(),
    result_backend=broker_url_from_env(),
    # JSON only: a pickle message is refused, never deserialized.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    event_serializer="json",
    # Flower's task metrics need task events; the runner does not mind them.
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_track_started=True,
    # One message at a time: a worker's memory is that of the task it runs, not of a backlog.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=3600,
)

# Signals are connected when the app is imported, in every worker process.
from membench.workers import instrumentation  # noqa: E402, F401
