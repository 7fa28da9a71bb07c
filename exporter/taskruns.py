"""The instrument's task hooks: in progress, outcome, duration, and the peak and retained memory
of each run, recorded in the worker's shared task table.

VmHWM is reset when the process goes from idle to busy: a run that then had the process to
itself gets its exact peak (always so in prefork children and solo); one that shared it
(gevent, threads) gets the peak of the shared window, recorded apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from membench.exporter.state import TaskRun, guarded, state
from membench.procfs import OwnMemory

# task_postrun's state -> outcome.
_OUTCOMES = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry", "REJECTED": "rejected"}
_memory = OwnMemory()


@dataclass(frozen=True, slots=True)
class RunFinished:
    """One run's figures as the instrument recorded them, for a listener of this process
    (`membench run --app` writes each to a per-run record): bytes and seconds."""

    task_id: str
    outcome: str
    duration_s: float
    peak_rss_bytes: int | None  # exact: the run had the process to itself
    window_peak_rss_bytes: int | None  # shared: the window's peak, not the run's own
    retained_bytes: int | None


_listeners: list[Callable[[RunFinished], None]] = []


def add_run_listener(listener: Callable[[RunFinished], None]) -> None:
    """Call `listener` in the process that ran each task, after the instrument recorded the run
    (inside the instrument's guard: a listener that fails is logged, never raised)."""
    _listeners.append(listener)


@guarded
def on_task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    table = state.table
    if table is None or task_id is None:
        return
    index = table.task_index(getattr(task, "name", ""))
    with state.lock:
        busy = bool(state.runs)
        for run in state.runs.values():
            run.shared = True
        # Idle to busy: nobody's window is running, so resetting the peak corrupts nothing.
        window_reset = _memory.reset_peak() if not busy else False
        rss_before = _memory.read()[0]
        state.runs[task_id] = TaskRun(index, time.perf_counter(), rss_before, window_reset, busy)
        table.started(state.row, index)


@guarded
def on_task_postrun(task_id: str | None = None, **signal: Any) -> None:
    table = state.table
    if table is None or task_id is None:
        return
    with state.lock:
        run = state.runs.pop(task_id, None)
        if run is None:
            return
        duration = time.perf_counter() - run.started
        rss_after, hwm = _memory.read()
        exact = run.window_reset and not run.shared
        finished = RunFinished(
            task_id,
            _OUTCOMES.get(signal.get("state") or "", "failure"),
            duration,
            peak_rss_bytes=hwm if exact else None,
            window_peak_rss_bytes=None if exact else hwm,
            retained_bytes=rss_after - run.rss_before if exact else None,
        )
        table.finished(
            state.row,
            run.task_index,
            finished.outcome,
            duration,
            peak=finished.peak_rss_bytes,
            window_peak=finished.window_peak_rss_bytes,
            retained=finished.retained_bytes,
        )
        state.completed += 1
    for listener in _listeners:
        listener(finished)


@guarded
def on_task_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    from billiard.exceptions import WorkerLostError

    # Raised in the main process after a prefork child died mid-task: the child counted nothing.
    if state.table is not None and isinstance(exception, WorkerLostError):
        state.table.count(0, state.table.task_index(getattr(sender, "name", "")), "lost")


@guarded
def on_task_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    if state.table is None:
        return
    name = getattr(sender, "name", None) or getattr(request, "task", "") or ""
    state.table.count(0, state.table.task_index(str(name)), "revoked")
