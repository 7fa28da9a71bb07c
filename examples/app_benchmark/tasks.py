"""A plain Celery app to benchmark with `membench run --app tasks:app --task NAME`: no membench
import, no instrument line (membench adds the instrument when it starts the worker).

Its tasks show what each pool does to a task: `hold` allocates and sleeps (yields under gevent),
`spin` computes in pure Python (holds the GIL, never yields), `fail` raises, `hang` never ends.
"""

from __future__ import annotations

import os
import time

from celery import Celery

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("tasks", broker=BROKER_URL, backend=BROKER_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

_MIB = 1024 * 1024


@app.task(name="tasks.hold")
def hold(size_mb: float, hold_s: float = 0.5) -> int:
    """Hold `size_mb` MiB (every page written, so all of it is resident) for `hold_s` seconds."""
    buffer = bytearray(int(size_mb * _MIB))
    for offset in range(0, len(buffer), 4096):
        buffer[offset] = 1
    time.sleep(hold_s)
    return len(buffer)


@app.task(name="tasks.spin")
def spin(cpu_s: float = 0.2) -> int:
    """Compute in pure Python until this thread has spent `cpu_s` CPU seconds."""
    end = time.thread_time() + cpu_s
    loops = 0
    while time.thread_time() < end:
        loops += sum(range(1000)) & 1
    return loops


@app.task(name="tasks.fail")
def fail(message: str = "tasks.fail always fails") -> None:
    """Always raises: counted as a failure, with this last line."""
    raise ValueError(message)


@app.task(name="tasks.hang")
def hang() -> None:
    """Never returns: what --task-timeout is for."""
    while True:
        time.sleep(3600)
