"""How many series one instrumented worker exports: the formula docs/instrument.md gives, in code,
so that a test can hold a real worker's exposition to it.

Per process: 9 process series (RSS, PSS, USS, swap, peak RSS, threads, start time, tasks in
progress, CPU seconds), 7 cgroup series (usage, peak, anon, file, limit, OOM kills, info) and the
worker info. Per task name that has run in the worker (never per process): its outcomes, its
duration histogram (a bucket per bound and +Inf, sum, count), in progress, last duration, and
the memory series (exact peak and retained; the window peak where tasks share a process).
"""

from __future__ import annotations

from membench.exporter import names

PROCESS_SERIES = 9
CGROUP_SERIES = 7
INFO_SERIES = 1
WORKER_SERIES = len(names.RECYCLE_REASONS)


def task_series(shared: bool = False) -> int:
    """Series of one task name in one worker: `shared` where it ran beside other tasks."""
    histogram = len(names.TASK_DURATION_BUCKETS) + 1 + 2
    memory = 3 if shared else 2  # exact peak, retained (+ window peak)
    return len(names.TASK_OUTCOMES) + histogram + 2 + memory


def worker_series(
    children: int,
    task_names: int,
    *,
    one_port: bool = False,
    shared: bool = False,
    cgroup: int = CGROUP_SERIES,
) -> int:
    """Series of one worker with `children` prefork children (0 for gevent, threads, solo) and
    `task_names` task names that have run. `cgroup`: the cgroup series this host has (7 with a
    limit, 6 without, 0 outside any memory cgroup)."""
    per_process = PROCESS_SERIES + cgroup + INFO_SERIES
    # One-port: the main process serves its children's process series, once, without repeating
    # the cgroup (shared by the pod) or the info.
    children_series = children * (PROCESS_SERIES if one_port else per_process)
    return per_process + children_series + WORKER_SERIES + task_names * task_series(shared)
