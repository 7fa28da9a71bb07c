"""A small Celery app watched by membench's instrument: one line, `instrument(app)`.

Its tasks make the instrument's figures easy to check: `allocate` holds a known size for a
moment, `leak` keeps what it allocates for the life of the process, `fail` raises, `sleep`
sleeps. Run it with `celery -A proj worker` from this folder (README.md beside it).
"""

from __future__ import annotations

import os
import time

from celery import Celery

from membench.celery import instrument

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("proj", broker=BROKER_URL, backend=BROKER_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
instrument(app)

_MIB = 1024 * 1024
_kept: list[bytearray] = []


def _touched(size_mb: float) -> bytearray:
    """`size_mb` MiB whose every page is written, so all of it is resident (not lazily zero)."""
    buffer = bytearray(int(size_mb * _MIB))
    for offset in range(0, len(buffer), 4096):
        buffer[offset] = 1
    return buffer


@app.task(name="proj.allocate")
def allocate(size_mb: float, hold_s: float = 0.0) -> int:
    """Hold `size_mb` MiB for `hold_s` seconds, then free it."""
    buffer = _touched(size_mb)
    time.sleep(hold_s)
    return len(buffer)


@app.task(name="proj.leak")
def leak(size_mb: float) -> int:
    """Allocate `size_mb` MiB and never free it: the process grows by that much each run."""
    _kept.append(_touched(size_mb))
    return len(_kept)


@app.task(name="proj.fail")
def fail() -> None:
    """Always raises: counted as a failure."""
    raise ValueError("proj.fail always fails")


@app.task(name="proj.sleep")
def sleep(seconds: float) -> float:
    """Sleep `seconds` (cooperatively under gevent, which patches time.sleep)."""
    time.sleep(seconds)
    return seconds
