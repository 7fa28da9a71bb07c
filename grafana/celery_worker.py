"""Panels of the Celery worker dashboard: per task name and per process memory of any app
instrumented with `membench.celery.instrument(app)`, its cgroup, and what its alerts watch (6 h).
"""

from __future__ import annotations

import membench.prometheus.mixin as mixin
from membench.exporter import names as n
from membench.grafana.kinds import timeseries
from membench.grafana.records import (
    Dashboard,
    Panel,
    Row,
    Target,
    alert_steps,
    on_process,
    quantile,
)
from membench.units import MIB

# The thresholds of the alerts (prometheus/alerts.py) that panels draw as a line: the very
# constants the alerts compare with.
ALERT_THRESHOLDS = {
    mixin.TASK_RETAINED_GROWTH: mixin.RETAINED_FLOOR_BYTES,
    mixin.CGROUP_NEAR_LIMIT: mixin.CGROUP_NEAR_LIMIT_RATIO,
}
# The windows those alerts use, so the panels show what the alerts see.
RETAINED_DERIV_WINDOW = "30m"
EVENTS_WINDOW = "10m"
TOP = 10

# Series of an app's workers have no `scenario` label; `=~".*"` (All) also matches a missing one.
TASK_LEGEND = "{{task}} ({{job}})"
WORKER_TASK_LEGEND = "{{task}} ({{instance}})"
PROCESS_LEGEND = "{{instance}} {{role}} {{child}}"
WORKER_LEGEND = "{{instance}}"


def by_worker(metric: str) -> str:
    """One value per worker of a per-cgroup series: every process of a cgroup reads the same."""
    return f"max by (namespace, job, instance) ({on_process(metric)})"


def threshold(alert: str, legend: str) -> Target:
    """A flat line at `alert`'s threshold."""
    return (f"vector({ALERT_THRESHOLDS[alert]})", f"alert {alert}: {legend}")


def task_top(metric: str, by: str = "job, task") -> str:
    return f"topk({TOP}, max by ({by}) ({on_process(metric)}))"


def duration(q: float) -> Target:
    return (
        quantile(q, "job, task", on_process(f"{n.TASK_DURATION_SECONDS}_bucket")),
        f"{{{{task}}}} p{round(q * 100)} ({{{{job}}}})",
    )


CELERY_WORKER = Dashboard(
    uid="membench-celery-worker",
    title="Celery worker memory",
    description=(
        "Memory per task name and per worker process of any Celery app instrumented with "
        "membench.celery.instrument(app): exact and shared task peaks, retained growth, cgroup "
        "usage against its limit, OOM kills and child recycles."
    ),
    time_from="now-6h",
    refresh="30s",
    items=(
        Row("Memory per task name"),
        Panel(
            "bargauge",
            "Exact peak RSS per task (top 10)",
            "Peak RSS of each task name's last run that had its process to itself (always so in "
            "prefork children and solo): the kernel's VmHWM reset at task start, read at task "
            "end. Highest over the job's workers. A task whose runs always overlapped others "
            "(busy gevent, eventlet, threads pools) has none: see the shared-window panel.",
            ((task_top(n.TASK_PEAK_RSS_BYTES), TASK_LEGEND),),
            unit="bytes",
            width=12,
            height=9,
        ),
        Panel(
            "bargauge",
            "Shared-window peak RSS per task (top 10, upper bound)",
            "Peak RSS of the process over a window in which other tasks ran too (gevent, "
            "eventlet, threads pools): an upper bound shared by every task of that window, never "
            "the task's own peak. Do not compare it with the exact peaks.",
            ((task_top(n.TASK_WINDOW_PEAK_RSS_BYTES), TASK_LEGEND),),
            unit="bytes",
            width=12,
            height=9,
        ),
        timeseries(
            "Retained memory per task (top 10)",
            "RSS after a run minus before it, summed over the task's exact runs in the worker's "
            "live processes. A leaking task climbs run after run; others stay near 0. Drops when "
            "a prefork child that held some of it is replaced. The line is the alert's floor.",
            "bytes",
            (task_top(n.TASK_RETAINED_BYTES, "job, instance, task"), WORKER_TASK_LEGEND),
            threshold("MembenchTaskRetainedGrowth", "floor"),
            stepped=True,
        ),
        timeseries(
            "Retained memory growth per task (top 10, deriv over 30m)",
            "Slope of the retained memory over the last 30 minutes, in MiB per hour: what "
            "MembenchTaskRetainedGrowth watches (it fires when this stays above 0 for an hour "
            "while the retained memory is over its floor).",
            "suffix: MiB/h",
            (
                f"topk({TOP}, max by (job, instance, task) "
                f"(deriv({on_process(n.TASK_RETAINED_BYTES)}[{RETAINED_DERIV_WINDOW}])))"
                f" * 3600 / {MIB}",
                WORKER_TASK_LEGEND,
            ),
            legend_calcs=("mean", "lastNotNull", "max"),
        ),
        Row("Task runs and duration"),
        timeseries(
            "Task runs by outcome",
            "Finished runs per second by task name and outcome (success, failure, retry, "
            "rejected, revoked, lost), summed over the job's workers. Outcomes with no run in "
            "the window are hidden. `lost` is a run whose prefork child died.",
            "ops",
            (
                f"sum by (job, task, outcome) "
                f"(rate({on_process(n.TASK_RUNS_TOTAL)}[$__rate_interval])) > 0",
                "{{task}} {{outcome}} ({{job}})",
            ),
            width=8,
        ),
        timeseries(
            "Task duration p50 / p90",
            "Quantiles of task wall time per task name, from the workers' duration histogram. "
            "Gaps mean no run of that task ended in the window.",
            "s",
            duration(0.5),
            duration(0.9),
            width=8,
        ),
        timeseries(
            "Tasks in progress per task",
            "Runs executing now per task name, summed over the job's workers.",
            "short",
            (f"sum by (job, task) ({on_process(n.TASKS_IN_PROGRESS)})", TASK_LEGEND),
            width=8,
            stepped=True,
        ),
        Row("Worker processes"),
        timeseries(
            "RSS per process",
            "Resident set size of each worker process (main and each prefork child, by pool "
            "index), read from /proc at scrape time. Shared pages count once per process.",
            "bytes",
            (on_process(n.PROCESS_RSS_BYTES), PROCESS_LEGEND),
        ),
        timeseries(
            "PSS per process",
            "Proportional set size of each worker process: pages shared between a prefork parent "
            "and its children are split between them, so these add up to the worker's footprint.",
            "bytes",
            (on_process(n.PROCESS_PSS_BYTES), PROCESS_LEGEND),
        ),
        timeseries(
            "Processes exporting per worker",
            "Worker processes with memory series now. A step down that does not come back within "
            "minutes is what MembenchWorkerAbsent reports; a recycled child keeps its "
            "pool index, so a replacement shows as at most a one-scrape dip.",
            "short",
            (
                f"count by (job, instance, scenario) ({on_process(n.PROCESS_RSS_BYTES)})",
                WORKER_LEGEND,
            ),
            width=8,
            stepped=True,
        ),
        timeseries(
            "Prefork child recycles by reason (last 10 minutes)",
            "Children replaced in the trailing 10 minutes, by reason: max-tasks-per-child, "
            "max-memory-per-child, or died (killed, crashed, OOM-killed).",
            "short",
            (
                f"sum by (job, instance, reason) "
                f"(increase({on_process(n.CHILD_RECYCLES_TOTAL)}[{EVENTS_WINDOW}]))",
                "{{instance}} {{reason}}",
            ),
            width=8,
        ),
        timeseries(
            "CPU per process",
            "CPU time per second used by each worker process (1.0 = one core busy).",
            "percentunit",
            (f"rate({on_process(n.PROCESS_CPU_SECONDS_TOTAL)}[$__rate_interval])", PROCESS_LEGEND),
            width=8,
        ),
        Row("Memory cgroup"),
        Panel(
            "bargauge",
            "Cgroup memory used of its limit, now",
            "Each worker's memory cgroup usage divided by its limit, now. Orange from "
            f"{mixin.CGROUP_NEAR_LIMIT_RATIO:.0%}, the threshold of {mixin.CGROUP_NEAR_LIMIT}; "
            "empty when the cgroup has no limit.",
            (
                (
                    f"{by_worker(n.CGROUP_MEMORY_USAGE_BYTES)} "
                    f"/ {by_worker(n.CGROUP_MEMORY_LIMIT_BYTES)}",
                    WORKER_LEGEND,
                ),
            ),
            unit="percentunit",
            width=24,
            height=6,
            thresholds=alert_steps(mixin.CGROUP_NEAR_LIMIT_RATIO),
            max=1,
        ),
        timeseries(
            "Cgroup memory usage of its limit",
            "Usage of each worker's memory cgroup divided by its limit (max over the worker's "
            "processes: they all read the same cgroup). Empty when the cgroup has no limit. The "
            "line is MembenchCgroupMemoryNearLimit's threshold.",
            "percentunit",
            (
                f"{by_worker(n.CGROUP_MEMORY_USAGE_BYTES)} "
                f"/ {by_worker(n.CGROUP_MEMORY_LIMIT_BYTES)}",
                WORKER_LEGEND,
            ),
            threshold("MembenchCgroupMemoryNearLimit", "threshold"),
            width=8,
        ),
        timeseries(
            "Cgroup memory: usage, anonymous, limit",
            "Each worker's cgroup usage (page cache included), its anonymous memory (what the "
            "kernel cannot reclaim without swap) and its limit, if any.",
            "bytes",
            (by_worker(n.CGROUP_MEMORY_USAGE_BYTES), "{{instance}} usage"),
            (by_worker(n.CGROUP_MEMORY_ANON_BYTES), "{{instance}} anon"),
            (by_worker(n.CGROUP_MEMORY_LIMIT_BYTES), "{{instance}} limit"),
            width=8,
        ),
        timeseries(
            "OOM kills (last 10 minutes)",
            "Processes of each worker's cgroup the kernel's OOM killer killed in the trailing "
            "10 minutes: MembenchOOMKill fires when this is above 0.",
            "short",
            (
                f"max by (job, instance) "
                f"(increase({on_process(n.CGROUP_OOM_KILLS_TOTAL)}[{EVENTS_WINDOW}]))",
                WORKER_LEGEND,
            ),
            width=8,
        ),
    ),
)
