"""Keep N copies of the user's task in flight until M have finished, each within a deadline, and
collect what every run recorded (membench/run/app/launcher.py writes the records)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from membench.results.model import RunBegan, RunFinished
from membench.run.app.spec import AppSpec
from membench.run.app.worker import AppWorker, RecordReader

# Outcomes of a run as the table counts them: the instrument's, then the runner's own.
OUTCOMES = ("success", "failure", "retry", "rejected", "revoked", "lost", "timed_out", "not_sent")
MAX_ERRORS = 5  # distinct exception lines kept per row (a bounded set)
POLL_S = 0.005


@dataclass
class Load:
    """What one pool at one concurrency did with the task."""

    sent: int = 0
    first_sent_at: float | None = None
    last_end_at: float | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)  # exact per-run peaks (VmHWM)
    window_peaks: list[int] = field(default_factory=list)  # shared windows' peaks
    retained: list[int] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)
    worker_died: str = ""  # why the worker stopped during the load, if it did

    @property
    def finished(self) -> int:
        return sum(self.outcomes[o] for o in OUTCOMES if o not in ("timed_out", "not_sent"))

    def elapsed_s(self) -> float | None:
        if self.first_sent_at is None or self.last_end_at is None:
            return None
        return max(self.last_end_at - self.first_sent_at, 1e-6)

    def throughput(self) -> float | None:
        elapsed = self.elapsed_s()
        return self.finished / elapsed if elapsed and self.finished else None

    def take(self, record: RunFinished) -> None:
        outcome = record.outcome
        self.outcomes[outcome if outcome in OUTCOMES else "failure"] += 1
        self.last_end_at = max(self.last_end_at or 0.0, record.t)
        error = record.error
        if error and (error in self.errors or len(self.errors) < MAX_ERRORS):
            self.errors[error] += 1
        if record.duration_s is not None:
            self.durations.append(record.duration_s)
        for value, into in (
            (record.peak_rss_bytes, self.peaks),
            (record.window_peak_rss_bytes, self.window_peaks),
            (record.retained_bytes, self.retained),
        ):
            if value is not None:
                into.append(value)


def drive(
    client: Any,
    worker: AppWorker,
    spec: AppSpec,
    tasks: int,
    in_flight: int,
    task_timeout_s: float,
    tick: Callable[[Load], None] | None = None,
) -> Load:
    """Send `spec`'s task to the worker's queue, `in_flight` at a time, until `tasks` have ended.

    A run with no end record `task_timeout_s` after it started (or, never started, after it was
    sent) is timed out: its slot may never free, so nothing more is sent and what is unsent is
    counted `not_sent`. A worker that dies ends the load; its runs in flight count as lost.
    """
    load = Load()
    reader = RecordReader(worker.records_dir)
    waiting: dict[str, float] = {}  # task id -> when its deadline began (wall clock)
    stop_sending = False
    last_tick = time.monotonic()
    while True:
        while not stop_sending and len(waiting) < in_flight and load.sent < tasks:
            # No result is read (the run's record says how it ended): none is stored either.
            result = client.send_task(
                spec.task,
                args=spec.args,
                kwargs=spec.kwargs,
                queue=worker.queue,
                ignore_result=True,
            )
            now = time.time()
            load.first_sent_at = load.first_sent_at or now
            waiting[result.id] = now
            load.sent += 1
        for record in reader.read():
            if record.id not in waiting:
                continue
            load.pids.add(record.pid)
            if isinstance(record, RunBegan):
                waiting[record.id] = record.t
            else:
                del waiting[record.id]
                load.take(record)
        now = time.time()
        for task_id, began in list(waiting.items()):
            if now - began > task_timeout_s:
                del waiting[task_id]
                load.outcomes["timed_out"] += 1
                stop_sending = True
        if not worker.alive():
            reason = worker.exit_reason()
            if reason.endswith("signal 9"):
                reason += " during the run (SIGKILL: the kernel's OOM killer, or a kill -9)"
            else:
                reason += " during the run"
            load.worker_died = f"{reason}: {worker.log_tail(3)}"
            load.outcomes["lost"] += len(waiting)
            waiting.clear()
            stop_sending = True
        if not waiting and (stop_sending or load.sent >= tasks):
            break
        if tick is not None and time.monotonic() - last_tick > 5.0:
            tick(load)
            last_tick = time.monotonic()
        time.sleep(POLL_S)
    load.outcomes["not_sent"] += tasks - load.sent
    return load
