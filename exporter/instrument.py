"""Instrument any Celery app with one call: an exporter in every worker process (prefork children
included) and per-task runs, duration, peak and retained memory, through Celery's own hooks.

`instrument(app)` adds the worker options `--membench-port`, `--membench-host` and
`--membench-mode` (defaults from MEMBENCH_METRICS_PORT, MEMBENCH_METRICS_HOST,
MEMBENCH_METRICS_MODE) and connects the signals below. Nothing runs until a worker starts.

- worker_init (main process, before the pool forks): the task table every process shares, the
  main process's exporter (its own memory, the worker's per-task metrics and, in one-port mode,
  every prefork child's memory read from /proc).
- worker_process_init (each prefork child): its row of the table and, in per-process mode, its
  own exporter on port+1+index.
- task_prerun / task_postrun (the process that runs the task): in progress, outcome, duration;
  VmHWM is reset when the process goes from idle to busy, so a run that had the process to
  itself gets its exact peak, and one that shared it gets the peak of the shared window.
- task_failure with WorkerLostError, task_revoked (main process): lost and revoked runs.

A metrics failure never reaches the worker: each hook logs it loudly and returns.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from celery import signals
from prometheus_client import CollectorRegistry

from membench import settings
from membench.exporter import names
from membench.exporter.collector import (
    ProcessMemoryCollector,
    ProcessSource,
    WorkerInfoCollector,
)
from membench.exporter.options import (
    DEFAULT_MAX_TASK_NAMES,
    DEFAULT_PORT,
    ONE_PORT,
    PER_PROCESS,
    InstrumentOptions,
    check_arguments,
    worker_click_options,
)
from membench.exporter.server import start_exporter
from membench.exporter.state import guarded, state
from membench.exporter.taskcollector import TaskStatsCollector
from membench.exporter.taskruns import (
    on_task_failure,
    on_task_postrun,
    on_task_prerun,
    on_task_revoked,
)
from membench.exporter.tasktable import (
    EXIT_MAX_MEMORY,
    EXIT_MAX_TASKS,
    EXIT_SHUTDOWN,
    TaskTable,
)
from membench.procfs import read_parent_pid, reset_peak_rss

log = logging.getLogger("membench.instrument")

# billiard's exit code for a child that reached --max-tasks-per-child or --max-memory-per-child.
_EX_RECYCLE = 0x9B
_POOLS = {"prefork": "prefork", "processes": "prefork", "thread": "threads", "threads": "threads"}
_POOLS |= {name: name for name in ("gevent", "eventlet", "solo")}


def instrument(
    app: Any,
    *,
    port: int | None = None,
    host: str | None = None,
    mode: str | None = None,
    labels: Mapping[str, str] | None = None,
    max_task_names: int = DEFAULT_MAX_TASK_NAMES,
) -> None:
    """Make every worker process of `app` export its memory and the worker's per-task metrics.

    Call it in the module that defines the app. Invalid arguments raise ValueError at once.
    `labels` (a few constant labels, e.g. a deployment's identity) are added to every series.
    """
    check_arguments(port, mode, labels, max_task_names)
    state.options = InstrumentOptions(port, host, mode, dict(labels or {}), max_task_names)
    worker_options = app.user_options["worker"]
    if not any(getattr(o, "name", None) == "membench_port" for o in worker_options):
        worker_options.update(worker_click_options())
    if not settings.exporter_enabled():
        return  # MEMBENCH_EXPORTER=off: the options still parse, nothing is measured
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=f"membench.{handler.__name__}")


def process_registry() -> CollectorRegistry | None:
    """The registry this process's exporter serves, for metrics of the app's own."""
    return state.registry


def process_labels() -> dict[str, str]:
    """The labels of this process's series (extra labels, pool, role, child), for the app's own
    per-process metrics in `process_registry()`; {} outside an instrumented worker."""
    return dict(state.labels)


# -- the worker's processes ------------------------------------------------------------------


def _pool_name(pool_cls: Any) -> str:
    name = pool_cls if isinstance(pool_cls, str) else getattr(pool_cls, "__module__", "")
    return _POOLS.get(str(name).rsplit(".", 1)[-1], "custom")


def _max_children(worker: Any) -> int:
    concurrency = getattr(worker, "concurrency", None)
    most = concurrency if isinstance(concurrency, int) and concurrency > 0 else os.cpu_count() or 1
    # --autoscale MAX,MIN arrives as a string, a tuple or a list, depending on who set it.
    numbers = re.findall(r"\d+", str(getattr(worker, "autoscale", None) or ""))
    return max([most, *(int(number) for number in numbers)])


def _task_names(app: Any, bound: int) -> list[str]:
    """The app's registered tasks, its own before Celery's built-ins, at most `bound`."""
    registered = sorted(app.tasks)
    own = [n for n in registered if not n.startswith("celery.")]
    builtin = [n for n in registered if n.startswith("celery.")]
    return (own + builtin)[:bound]


def _labels(role: str, child: str) -> dict[str, str]:
    assert state.options is not None
    return {**state.options.labels, "pool": state.pool, "role": role, "child": child}


T = TypeVar("T")


def _setting(option: T | None, given: T | None, default: T) -> T:
    """The worker's option, else instrument()'s argument, else the default."""
    return option if option is not None else given if given is not None else default


@guarded
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    options = state.options
    if options is None:
        return
    worker_options = getattr(sender, "options", None) or {}
    state.main_pid = os.getpid()
    state.pool = _pool_name(getattr(sender, "pool_cls", "unknown"))
    state.port = _setting(worker_options.get("membench_port"), options.port, DEFAULT_PORT)
    state.host = _setting(
        worker_options.get("membench_host"), options.host, settings.DEFAULT_METRICS_HOST
    )
    state.mode = _setting(worker_options.get("membench_mode"), options.mode, PER_PROCESS)
    max_tasks = getattr(sender, "max_tasks_per_child", None)
    state.max_tasks_per_child = max_tasks if isinstance(max_tasks, int) else None
    children = _max_children(sender) if state.pool == "prefork" else 0
    if state.port and state.mode == PER_PROCESS and state.port + children > 65535:
        # Bad input, said before the worker consumes anything: SystemExit is not an Exception,
        # so Celery's signal dispatch lets it end the worker.
        print(
            f"celery worker: --membench-port: {state.port} + {children} prefork children "
            "goes past port 65535",
            file=sys.stderr,
        )
        raise SystemExit(2)
    app = getattr(sender, "app", None)
    task_names = _task_names(app, options.max_task_names) if app is not None else []
    state.table = TaskTable(task_names, rows=1 + children)
    state.table.take_row(0, os.getpid(), time.time())
    state.row = 0
    registry = CollectorRegistry(auto_describe=True)
    main_labels = _labels(names.ROLE_MAIN, "")
    state.labels = main_labels
    sources = _main_sources(main_labels)
    registry.register(ProcessMemoryCollector(main_labels, sources=sources))
    worker_labels = {**options.labels, "pool": state.pool}
    registry.register(TaskStatsCollector(state.table, worker_labels))
    registry.register(
        WorkerInfoCollector(main_labels, mode=state.mode, concurrency=str(children or 1))
    )
    state.registry = registry
    _serve(state.port, main_labels, names.ROLE_MAIN)


def _main_sources(labels: Mapping[str, str]) -> Callable[[], Iterator[ProcessSource]]:
    values = tuple(labels.values())

    def sources() -> Iterator[ProcessSource]:
        table = state.table
        assert table is not None
        for process in table.processes():
            if process.row == 0:
                yield ProcessSource(values, "self", process.start_time, process.tasks_in_progress)
            elif state.mode == ONE_PORT and _is_our_child(process.pid):
                child = _labels(names.ROLE_CHILD, str(process.row - 1))
                yield ProcessSource(
                    tuple(child.values()),
                    process.pid,
                    process.start_time,
                    process.tasks_in_progress,
                )

    return sources


def _is_our_child(pid: int) -> bool:
    """The row's process is alive and still our child (pids are reused)."""
    try:
        return read_parent_pid(pid) == state.main_pid
    except OSError:
        return False


def _serve(port: int, labels: Mapping[str, str], role: str) -> None:
    assert state.registry is not None
    try:
        state.exporter = start_exporter(
            state.registry,
            state.host,
            port,
            targets_dir=settings.targets_dir(),
            target_labels=dict(labels),
        )
    except OSError as exc:
        log.error(
            "membench exporter (%s, pid %d) cannot listen on %s:%d: %s; this process runs "
            "without /metrics",
            role,
            os.getpid(),
            state.host,
            port,
            exc.strerror or exc,
        )
        return
    log.info(
        "membench exporter (%s, pid %d) on %s:%d",
        role,
        os.getpid(),
        state.exporter.host,
        state.exporter.port,
    )


@guarded
def _on_child_init(**_: Any) -> None:
    if state.table is None or os.getpid() == state.main_pid:
        return  # the solo pool sends this signal in the main process
    import billiard.process

    # The inherited listening socket belongs to the parent's exporter: close our copy only.
    if state.exporter is not None:
        state.exporter.close()
        state.exporter = None
    state.runs = {}
    state.lock = threading.Lock()
    state.completed = 0
    # billiard's pool numbers each child; celery-types' stubs of BaseProcess omit `index`.
    index: int = billiard.process.current_process().index  # type: ignore[attr-defined]
    if not 0 <= index < state.table.rows - 1:
        state.table = None  # more children than rows (autoscale past its maximum): no metrics
        log.error("membench instrument: pool index %d has no row; this child is not counted", index)
        return
    state.row = 1 + index
    reason = state.table.take_row(state.row, os.getpid(), time.time())
    if reason is not None:
        log.info("membench instrument: child %d replaced (%s)", index, reason)
    # A forked child's VmHWM starts at the parent's RSS; reset it so its peaks are its own.
    reset_peak_rss()
    if state.mode == ONE_PORT:
        state.registry = None
        return
    labels = _labels(names.ROLE_CHILD, str(index))
    state.labels = labels
    registry = CollectorRegistry(auto_describe=True)
    table, row = state.table, state.row

    def own() -> Iterator[ProcessSource]:
        for process in table.processes():
            if process.row == row:
                yield ProcessSource(
                    tuple(labels.values()), "self", process.start_time, process.tasks_in_progress
                )

    registry.register(ProcessMemoryCollector(labels, sources=own))
    registry.register(WorkerInfoCollector(labels, mode=state.mode))
    state.registry = registry
    _serve(state.port + 1 + index if state.port else 0, labels, names.ROLE_CHILD)


@guarded
def _on_child_shutdown(exitcode: int | None = None, **_: Any) -> None:
    if os.getpid() == state.main_pid:
        return
    if state.table is not None:
        if exitcode == _EX_RECYCLE:
            limit = state.max_tasks_per_child
            why = EXIT_MAX_TASKS if limit and state.completed >= limit else EXIT_MAX_MEMORY
            state.table.mark_exit(state.row, why)
        elif exitcode in (0, None):
            state.table.mark_exit(state.row, EXIT_SHUTDOWN)
    if state.exporter is not None:
        state.exporter.close()


@guarded
def _on_worker_shutdown(**_: Any) -> None:
    if state.table is not None and os.getpid() == state.main_pid:
        state.table.mark_exit(0, EXIT_SHUTDOWN)
    if state.exporter is not None:
        state.exporter.close()


_HANDLERS = (
    (signals.worker_init, _on_worker_init),
    (signals.worker_process_init, _on_child_init),
    (signals.worker_process_shutdown, _on_child_shutdown),
    (signals.worker_shutdown, _on_worker_shutdown),
    (signals.task_prerun, on_task_prerun),
    (signals.task_postrun, on_task_postrun),
    (signals.task_failure, on_task_failure),
    (signals.task_revoked, on_task_revoked),
)
