"""Per-task statistics of one worker, in memory its processes share: written by the process that
runs a task, read by the main process's exporter, which serves them once per worker.

The table is an anonymous shared mapping made by the main process before the pool forks, so every
prefork child writes into it without a file, a lock between processes or a message. Each process
owns a row (row 0 the main process, row 1+i prefork child i), so writers never share a cell; the
reader may see a run half-recorded for one scrape, never a torn number (aligned 8-byte stores).
Counters survive a child: its replacement (same pool index, same row) keeps adding to them.

Cost per task, measured in benchmarks/instrument_cost.py: a few float stores, no system call.
Prometheus client's multiprocess mode does the same job with one mmap file per process and
metric kind under PROMETHEUS_MULTIPROC_DIR; it needs that variable set before prometheus_client
is imported (which would switch the user's own metrics to it too) and files cleaned per pid.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from membench.exporter import names

OUTCOME_INDEX = {outcome: i for i, outcome in enumerate(names.TASK_OUTCOMES)}
RECYCLE_INDEX = {reason: i for i, reason in enumerate(names.RECYCLE_REASONS)}

# Why a process's row says it exited (EXIT_*), read by the child that takes the row over.
EXIT_RUNNING = 0.0
EXIT_MAX_TASKS = 1.0
EXIT_MAX_MEMORY = 2.0
EXIT_SHUTDOWN = 3.0
_EXIT_REASONS = {EXIT_MAX_TASKS: "max-tasks-per-child", EXIT_MAX_MEMORY: "max-memory-per-child"}


@dataclass(frozen=True, slots=True)
class TaskStats:
    """One task name's figures summed over a worker's processes (what the main process serves)."""

    task: str
    runs: dict[str, float]
    bucket_counts: list[float]  # cumulative, one per bound of `buckets` and +Inf
    duration_sum: float
    in_progress: float
    last_duration: float | None
    peak_rss: float | None  # the last exact run's peak
    window_peak_rss: float | None  # the last shared run's window peak
    retained: float | None  # over exact runs in live processes; None if none ran exact


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """What one process's row says of it: pid 0 means the row was never taken."""

    row: int
    pid: int
    start_time: float
    tasks_in_progress: float


class TaskTable:
    """Rows of processes x task names x fields of float64, in one shared anonymous mapping."""

    def __init__(self, task_names: Sequence[str], rows: int, buckets: Sequence[float] = ()) -> None:
        self.task_names = [*task_names, names.OTHER_TASK]
        self._index = {name: i for i, name in enumerate(task_names)}
        self.buckets = tuple(buckets or names.TASK_DURATION_BUCKETS)
        self.rows = rows
        # Fields of one (row, task) cell.
        n_out = len(names.TASK_OUTCOMES)
        self._f_buckets = n_out
        self._f_sum = self._f_buckets + len(self.buckets) + 1
        self._f_in_progress = self._f_sum + 1
        self._f_last_duration = self._f_in_progress + 1
        self._f_last_at = self._f_last_duration + 1
        self._f_peak = self._f_last_at + 1
        self._f_peak_at = self._f_peak + 1
        self._f_window = self._f_peak_at + 1
        self._f_window_at = self._f_window + 1
        self._f_retained = self._f_window_at + 1
        self._f_exact_runs = self._f_retained + 1
        self._cell = self._f_exact_runs + 1
        # Per row: pid, start time, exit reason, tasks in progress; then the cells.
        self._row_head = 4
        self._row = self._row_head + self._cell * len(self.task_names)
        self._worker_head = len(names.RECYCLE_REASONS)
        size = 8 * (self._worker_head + self._row * rows)
        self._map = mmap.mmap(-1, size)  # MAP_SHARED | MAP_ANONYMOUS: shared with forked children
        self._d = memoryview(self._map).cast("d")

    # -- writers: the process that owns `row` ------------------------------------------------

    def task_index(self, task: str) -> int:
        """The column of `task`: registered names in order, every other name shares the last."""
        return self._index.get(task, len(self.task_names) - 1)

    def _base(self, row: int, task_index: int) -> int:
        return self._worker_head + row * self._row + self._row_head + task_index * self._cell

    def _head(self, row: int) -> int:
        return self._worker_head + row * self._row

    def take_row(self, row: int, pid: int, start_time: float) -> str | None:
        """Make `row` this process's: its gauges start at zero, its counters go on. Returns the
        recycle reason of the process that held the row before, if there was one."""
        head = self._head(row)
        d = self._d
        previous_pid, previous_exit = d[head], d[head + 2]
        reason = None
        if previous_pid and previous_exit != EXIT_SHUTDOWN:
            reason = _EXIT_REASONS.get(previous_exit, "died")
            d[RECYCLE_INDEX[reason]] += 1
        d[head], d[head + 1], d[head + 2], d[head + 3] = float(pid), start_time, EXIT_RUNNING, 0.0
        for t in range(len(self.task_names)):
            base = self._base(row, t)
            d[base + self._f_in_progress] = 0.0
            d[base + self._f_retained] = 0.0
        return reason

    def mark_exit(self, row: int, why: float) -> None:
        self._d[self._head(row) + 2] = why

    def started(self, row: int, task_index: int) -> None:
        d = self._d
        d[self._base(row, task_index) + self._f_in_progress] += 1
        d[self._head(row) + 3] += 1

    def finished(
        self,
        row: int,
        task_index: int,
        outcome: str,
        duration: float | None,
        peak: float | None = None,
        window_peak: float | None = None,
        retained: float | None = None,
    ) -> None:
        """A run that started here ended: gauges down, outcome and figures recorded."""
        d = self._d
        base = self._base(row, task_index)
        d[base + self._f_in_progress] = max(d[base + self._f_in_progress] - 1, 0.0)
        head = self._head(row)
        d[head + 3] = max(d[head + 3] - 1, 0.0)
        self.count(row, task_index, outcome)
        now = time.time()
        if duration is not None:
            i = 0
            for i, bound in enumerate(self.buckets):  # noqa: B007 - i is used after the loop
                if duration <= bound:
                    break
            else:
                i = len(self.buckets)
            d[base + self._f_buckets + i] += 1
            d[base + self._f_sum] += duration
            d[base + self._f_last_duration] = duration
            d[base + self._f_last_at] = now
        if peak is not None:
            d[base + self._f_peak] = peak
            d[base + self._f_peak_at] = now
        if window_peak is not None:
            d[base + self._f_window] = window_peak
            d[base + self._f_window_at] = now
        if retained is not None:
            d[base + self._f_retained] += retained
            d[base + self._f_exact_runs] += 1

    def count(self, row: int, task_index: int, outcome: str) -> None:
        """Count a run the main process learns of (revoked, lost): no duration, no memory."""
        self._d[self._base(row, task_index) + OUTCOME_INDEX[outcome]] += 1

    # -- reader: the main process's exporter ------------------------------------------------

    def processes(self) -> Iterator[ProcessRow]:
        d = self._d
        for row in range(self.rows):
            head = self._head(row)
            if d[head] and d[head + 2] == EXIT_RUNNING:
                yield ProcessRow(row, int(d[head]), d[head + 1], d[head + 3])

    def recycles(self) -> dict[str, float]:
        return {reason: self._d[i] for reason, i in RECYCLE_INDEX.items()}

    def stats(self) -> Iterator[TaskStats]:
        """Every task name that has run or runs now, summed over rows; the others not at all."""
        d = self._d
        n_bounds = len(self.buckets) + 1
        for t, task in enumerate(self.task_names):
            runs = dict.fromkeys(names.TASK_OUTCOMES, 0.0)
            counts = [0.0] * n_bounds
            total = in_progress = retained = exact_runs = 0.0
            latest: tuple[float, float | None] = (0.0, None)
            last = peak = window = latest
            for row in range(self.rows):
                base = self._base(row, t)
                for outcome, i in OUTCOME_INDEX.items():
                    runs[outcome] += d[base + i]
                for i in range(n_bounds):
                    counts[i] += d[base + self._f_buckets + i]
                total += d[base + self._f_sum]
                in_progress += d[base + self._f_in_progress]
                retained += d[base + self._f_retained]
                exact_runs += d[base + self._f_exact_runs]
                last = _latest(last, d[base + self._f_last_at], d[base + self._f_last_duration])
                peak = _latest(peak, d[base + self._f_peak_at], d[base + self._f_peak])
                window = _latest(window, d[base + self._f_window_at], d[base + self._f_window])
            if not any(runs.values()) and not in_progress:
                continue
            cumulative, running = [], 0.0
            for c in counts:
                running += c
                cumulative.append(running)
            yield TaskStats(
                task=task,
                runs=runs,
                bucket_counts=cumulative,
                duration_sum=total,
                in_progress=in_progress,
                last_duration=last[1],
                peak_rss=peak[1],
                window_peak_rss=window[1],
                retained=retained if exact_runs else None,
            )


def _latest(
    best: tuple[float, float | None], at: float, value: float
) -> tuple[float, float | None]:
    return (at, value) if at > best[0] else best
