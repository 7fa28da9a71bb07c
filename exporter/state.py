"""The instrument's state in one process (set by the worker's hooks, read by the task hooks),
and the guard that keeps a metrics failure out of the worker."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from membench import settings
from membench.exporter.options import DEFAULT_PORT, PER_PROCESS, InstrumentOptions
from membench.exporter.server import Exporter
from membench.exporter.tasktable import TaskTable

log = logging.getLogger("membench.instrument")


@dataclass(slots=True)
class TaskRun:
    """A run in progress in this process, by task id."""

    task_index: int
    started: float
    rss_before: int
    window_reset: bool  # VmHWM was reset when this run began
    shared: bool = False  # another task ran in the process meanwhile


@dataclass
class ProcessState:
    """What the hooks of this process know; a prefork child starts from a copy of its parent's."""

    options: InstrumentOptions | None = None
    table: TaskTable | None = None
    row: int = 0
    main_pid: int | None = None
    pool: str = "unknown"
    mode: str = PER_PROCESS
    port: int = DEFAULT_PORT
    host: str = settings.DEFAULT_METRICS_HOST
    max_tasks_per_child: int | None = None
    completed: int = 0
    exporter: Exporter | None = None
    registry: CollectorRegistry | None = None
    labels: dict[str, str] = field(default_factory=dict)
    runs: dict[str, TaskRun] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures_logged: set[str] = field(default_factory=set)


state = ProcessState()


def guarded(hook: Callable[..., None]) -> Callable[..., None]:
    """A hook whose failure is logged (traceback once per hook) and never raised into Celery."""

    @functools.wraps(hook)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:
            first = hook.__name__ not in state.failures_logged
            state.failures_logged.add(hook.__name__)
            log.error(
                "membench instrument: %s failed in pid %d; the worker goes on without it",
                hook.__name__,
                os.getpid(),
                exc_info=first,
            )

    return run
