"""The process_batch task: run subtasks that build, hold and drop real data, and report the peak."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from membench.exporter import names
from membench.procfs import (
    read_process_memory,
    read_status_memory,
    read_thread_count,
    reset_peak_rss,
)
from membench.results.model import TaskParams, TaskReport
from membench.workers.allocator import active_allocator, release_free_memory
from membench.workers.app import MembenchTask, app
from membench.workers.instrumentation import current_metrics
from membench.workers.numpy_payload import numpy_loaded
from membench.workers.params import BatchParams, validate_payload
from membench.workers.subtasks import (
    SubtaskResult,
    batch_digest,
    load_payload,
    result_means,
    subtask_body,
)


class SubtaskObserver:
    """What subtasks see while holding data: most OS threads, and RSS for the fallback peak."""

    def __init__(self) -> None:
        self.max_os_threads = 0
        self.max_rss = 0

    def observe(self) -> None:
        # One read of /proc/self/status: listing /proc/self/task as well cost ~0.8 ms per
        # subtask with 40 OS threads (py-spy: benchmarks/profile_wall.py).
        memory = read_process_memory(with_pss=False)
        threads = memory.threads if memory.threads is not None else read_thread_count()
        self.max_os_threads = max(self.max_os_threads, threads)
        self.max_rss = max(self.max_rss, memory.rss)


Subtask = Callable[[int], SubtaskResult]


def _run_threads(fn: Subtask, params: BatchParams) -> list[SubtaskResult]:
    # Under the gevent pool, `threading` is monkey-patched: these "threads" are greenlets.
    with ThreadPoolExecutor(max_workers=params.workers) as pool:
        return list(pool.map(fn, range(params.subtasks)))


def _run_sequential(fn: Subtask, params: BatchParams) -> list[SubtaskResult]:
    return [fn(i) for i in range(params.subtasks)]


def _run_greenlets(fn: Subtask, params: BatchParams) -> list[SubtaskResult]:
    import gevent.pool  # imported here: prefork workers never need gevent loaded

    return list(gevent.pool.Pool(params.workers).imap_unordered(fn, range(params.subtasks)))


STRATEGY_RUNNERS: dict[str, Callable[[Subtask, BatchParams], list[SubtaskResult]]] = {
    "threads": _run_threads,
    "sequential": _run_sequential,
    "greenlets": _run_greenlets,
}


def run_batch(params: BatchParams) -> dict[str, Any]:
    """Run one batch in this process and return its report (no Celery involved: testable alone)."""
    metrics = current_metrics()
    observer = SubtaskObserver()

    def held(index: int) -> None:
        # Every OS thread the strategy uses exists once the first held_at_once subtasks
        # run, so later rounds need no /proc read: each read releases the GIL, a hand-off
        # the measured threads then wait for. Without VmHWM, every subtask samples RSS.
        if index < params.held_at_once() or peak_method == "sampled":
            observer.observe()

    # First use imports numpy or the user's module: before the peak is reset, so it is not counted.
    body = subtask_body(params, held)

    def subtask(index: int) -> SubtaskResult:
        with metrics.subtask_running():
            result = body(index)
        metrics.subtasks_completed.inc()
        return result

    peak_method = "vmhwm" if reset_peak_rss() else "sampled"
    start_rss, _ = read_status_memory()
    observer.max_rss = start_rss
    started_at = time.time()
    t0 = time.perf_counter()
    results = STRATEGY_RUNNERS[params.strategy](subtask, params)
    wall_s = time.perf_counter() - t0
    end_rss, hwm = read_status_memory()
    peak = hwm if peak_method == "vmhwm" else max(observer.max_rss, end_rss)
    report = TaskReport(
        pid=os.getpid(),
        started_at=started_at,
        finished_at=started_at + wall_s,
        wall_s=wall_s,
        subtasks_done=len(results),
        digest=batch_digest(results),
        subtask_means=result_means(results),
        numpy_loaded=numpy_loaded(),
        start_rss_bytes=start_rss,
        end_rss_bytes=end_rss,
        peak_rss_bytes=peak,
        peak_method=peak_method,
        max_os_threads=observer.max_os_threads,
        allocator=active_allocator(),
        params=TaskParams(**params.as_kwargs()),
    )
    # Plain JSON values: the result backend serialises what the task returns.
    plain: dict[str, Any] = msgspec.to_builtins(report)
    return plain


@app.task(name=names.BENCHMARK_TASK, bind=True)
def process_batch(self: MembenchTask, /, **raw: Any) -> dict[str, Any]:
    """Validate the message's parameters (never trust the queue), then run the batch."""
    return run_batch(BatchParams.validate(raw))


@app.task(name="membench.load_payload")
def load_payload_task(payload: str, linger_s: float = 0.0) -> dict[str, Any]:
    """Import what `payload` runs on in this process (the runner does it before its baseline);
    linger so that the copies sent to a prefork pool at once land in distinct children."""
    rss_before, _ = read_status_memory()
    load_payload(validate_payload(payload))
    time.sleep(min(max(float(linger_s), 0.0), 1.0))
    return {
        "pid": os.getpid(),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": read_status_memory()[0],
        "numpy_loaded": numpy_loaded(),
    }


@app.task(name="membench.release_free_memory")
def release_free_memory_task() -> dict[str, Any]:
    """Return this process's free heap memory to the kernel (the runner's --malloc-trim)."""
    rss_before, _ = read_status_memory()
    method = release_free_memory()
    return {
        "pid": os.getpid(),
        "method": method,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": read_status_memory()[0],
    }
