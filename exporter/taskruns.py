"""The instrument's task hooks: in progress, outcome, duration, and the peak and retained memory
of each run, recorded in the worker's shared task table.

VmHWM is reset when the process goes from idle to busy: a run that then had the process to
itself gets its exact peak (always so in prefork children and solo); one that shared it
(gevent, threads) gets the peak of the shared window, recorded apart.
"""

from __future__ import annotations

import time
from typing import Any

from membench.exporter.state import TaskRun, guarded, state
from membench.procfs import OwnMemory

# task_postrun's state -> outcome.
_OUTCOMES = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry", "REJECTED": "rejected"}
_memory = OwnMemory()


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
        rss_before, _ = _memory.read()
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
        table.finished(
            state.row,
            run.task_index,
            _OUTCOMES.get(signal.get("state") or "", "failure"),
            duration,
            peak=hwm if exact else None,
            window_peak=None if exact else hwm,
            retained=rss_after - run.rss_before if exact else None,
        )
        state.completed += 1


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
