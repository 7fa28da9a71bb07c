"""Panels of the overview dashboard: memory and time per pool + strategy, live (1 h)."""

from __future__ import annotations

from membench.exporter import names as n
from membench.grafana.records import (
    MIB,
    PROCESS,
    PROCESS_LEGEND,
    Dashboard,
    Panel,
    Row,
    on_process,
    on_scenario,
)

# Flower 2.2's own metric names (flower/events.py, PrometheusMetrics); labelled by worker hostname.
FLOWER_WORKER_ONLINE = "flower_worker_online"
FLOWER_TASK_RUNTIME = "flower_task_runtime_seconds"
FLOWER_EVENTS_TOTAL = "flower_events_total"

WORKERS_JOB = "membench-workers"
LOADGEN_DURATION_BUCKETS = on_scenario(f"{n.LOADGEN_RUN_DURATION_SECONDS}_bucket")


def range_peak(rule: str) -> str:
    """Highest value of a per-scenario rule over the dashboard's time range."""
    return f"max by (scenario) (max_over_time({on_scenario(rule)}[$__range]))"


def quantile(q: float, by: str, buckets: str) -> str:
    """Quantile `q` per `by` label from a histogram's `_bucket` series selector."""
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({buckets}[$__rate_interval])))"


OVERVIEW = Dashboard(
    uid="membench-overview",
    title="celery-membench: overview",
    description=(
        "Which Celery pool + in-task concurrency model uses how much memory and time, live."
    ),
    time_from="now-1h",
    refresh="10s",
    items=(
        Row("Summary per approach"),
        Panel(
            "table",
            "Benchmark table: peak memory and execution time per approach",
            "The original benchmark's table, live. Peak Memory (MB) = highest worker-tree RSS sum "
            "(main + children, MB = 2^20 bytes) over the selected range, as sampled at scrape "
            "time, the figure the original compares. Peak PSS (MB) = same for PSS (shared pages "
            "counted once). Task Peak RSS (MB) = highest exact per-task peak (VmHWM reset at task "
            "start) of the executing process seen in the range. Execution Time (s) = wall time of "
            "the last task. Sorted by peak memory, lowest first.",
            (
                (f"{range_peak(n.RULE_TREE_RSS_SUM)} / {MIB}", "Peak Memory (MB)"),
                (f"{range_peak(n.RULE_TREE_PSS_SUM)} / {MIB}", "Peak PSS (MB)"),
                (f"{range_peak(n.RULE_TASK_PEAK_RSS_MAX)} / {MIB}", "Task Peak RSS (MB)"),
                (
                    f"max by (scenario) ({on_scenario(n.RULE_TASK_LAST_DURATION_MAX)})",
                    "Execution Time (s)",
                ),
            ),
            unit="none",
            decimals=2,
        ),
        Panel(
            "bargauge",
            "Peak worker-tree memory per approach (selected range)",
            "Highest RSS and PSS sum of each scenario's worker tree over the dashboard's time "
            "range (max_over_time over the recording rule). Sampled at scrape time: a spike "
            "shorter than the scrape interval shows only in the exact task peak.",
            (
                (range_peak(n.RULE_TREE_RSS_SUM), "{{scenario}} RSS"),
                (range_peak(n.RULE_TREE_PSS_SUM), "{{scenario}} PSS"),
            ),
            unit="bytes",
        ),
        Row("Memory over time"),
        Panel(
            "timeseries",
            "Worker-tree RSS per approach",
            "Sum of resident set size over the scenario's worker processes (prefork: parent + "
            "children; gevent: one process). What the original benchmark compares; shared pages "
            "are counted once per process.",
            ((on_scenario(n.RULE_TREE_RSS_SUM), "{{scenario}}"),),
            unit="bytes",
            height=9,
        ),
        Panel(
            "timeseries",
            "Worker-tree PSS per approach",
            "Sum of proportional set size over the scenario's worker processes: pages shared "
            "between a prefork parent and its children are split between them, so this is the "
            "tree's real footprint without double counting.",
            ((on_scenario(n.RULE_TREE_PSS_SUM), "{{scenario}}"),),
            unit="bytes",
            height=9,
        ),
        Panel(
            "timeseries",
            "Exact task peak RSS per process",
            "Peak RSS of the last task run in each process, exact: the kernel's VmHWM is reset "
            "at task start and read at task end. Changes only when a task finishes.",
            ((on_process(n.TASK_PEAK_RSS_BYTES), PROCESS_LEGEND),),
            unit="bytes",
            stepped=True,
        ),
        Panel(
            "timeseries",
            "RSS per worker process",
            "Resident set size of each worker process (main and each prefork child), read from "
            "/proc at scrape time. Use the instance variable to isolate one process.",
            ((on_process(n.PROCESS_RSS_BYTES), PROCESS_LEGEND),),
            unit="bytes",
        ),
        Row("Task duration"),
        Panel(
            "timeseries",
            "Task duration p50 / p90 / p99 per approach",
            "Quantiles of process_batch wall time from the workers' histogram over 5 minutes "
            "(recording rules). Gaps mean no task finished in that window.",
            (
                (on_scenario(n.RULE_TASK_DURATION_P50_5M), "{{scenario}} p50"),
                (on_scenario(n.RULE_TASK_DURATION_P90_5M), "{{scenario}} p90"),
                (on_scenario(n.RULE_TASK_DURATION_P99_5M), "{{scenario}} p99"),
            ),
            unit="s",
            width=16,
        ),
        Panel(
            "stat",
            "Last task duration per approach",
            "Wall time of the most recent process_batch run in each scenario (the Execution "
            "Time column of the original table).",
            (
                (
                    f"max by (scenario) ({on_scenario(n.RULE_TASK_LAST_DURATION_MAX)})",
                    "{{scenario}}",
                ),
            ),
            unit="s",
            decimals=2,
        ),
        Row("Tasks and workers"),
        Panel(
            "timeseries",
            "In-flight tasks and subtasks",
            "Tasks and subtasks currently executing per scenario. Concurrent strategies hold "
            "min(workers, subtasks) subtasks at once; the sequential one holds one.",
            (
                (f"sum by (scenario) ({on_process(n.TASKS_IN_PROGRESS)})", "{{scenario}} tasks"),
                (
                    f"sum by (scenario) ({on_process(n.SUBTASKS_IN_PROGRESS)})",
                    "{{scenario}} subtasks",
                ),
            ),
            unit="short",
            width=8,
            stepped=True,
        ),
        Panel(
            "timeseries",
            "Task runs by outcome",
            "Rate of finished process_batch runs per scenario and outcome (success, failure, "
            "lost, rejected) over 5 minutes.",
            ((on_scenario(n.RULE_TASK_RUNS_RATE5M), "{{scenario}} {{outcome}}"),),
            unit="ops",
            width=8,
        ),
        Panel(
            "stat",
            "Worker scrape targets up / down",
            "Worker exporter targets Prometheus scrapes successfully (up) and failing ones "
            "(down), by scenario and role. A prefork worker has one main and one target per "
            "child; a missing child means its exporter did not bind.",
            (
                (
                    f'sum by (scenario, role) (up{{job="{WORKERS_JOB}", {PROCESS}}})',
                    "{{scenario}} {{role}} up",
                ),
                (
                    f'count by (scenario, role) (up{{job="{WORKERS_JOB}", {PROCESS}}} == 0)',
                    "{{scenario}} {{role}} down",
                ),
            ),
            unit="short",
        ),
        Panel(
            "timeseries",
            "OS threads per worker process",
            "Kernel threads of each worker process. A gevent worker runs its task on 2 OS threads "
            "even with the thread strategy (monkey-patched to greenlets); a prefork child running "
            "a thread pool has workers + 2.",
            ((on_process(n.PROCESS_THREADS), PROCESS_LEGEND),),
            unit="short",
            stepped=True,
        ),
        Panel(
            "timeseries",
            "CPU per worker process",
            "CPU time per second used by each worker process (1.0 = one core busy).",
            (
                (
                    f"rate({on_process(n.PROCESS_CPU_SECONDS_TOTAL)}[$__rate_interval])",
                    PROCESS_LEGEND,
                ),
            ),
            unit="percentunit",
        ),
        Row("Flower"),
        Panel(
            "stat",
            "Flower: workers online",
            "Workers Flower has seen come online (from worker events) and all workers it knows. "
            "Flower labels by worker hostname, not scenario, so the scenario filter does not "
            "apply.",
            (
                (f"sum({FLOWER_WORKER_ONLINE})", "online"),
                (f"count({FLOWER_WORKER_ONLINE})", "known"),
            ),
            unit="short",
            width=6,
        ),
        Panel(
            "timeseries",
            "Flower: task runtime p50 / p99",
            "Task runtime as Celery reports it in task-succeeded events (Flower's histogram), by "
            "worker hostname. A cross-check of the workers' own duration histogram.",
            (
                (quantile(0.5, "worker", f"{FLOWER_TASK_RUNTIME}_bucket"), "{{worker}} p50"),
                (quantile(0.99, "worker", f"{FLOWER_TASK_RUNTIME}_bucket"), "{{worker}} p99"),
            ),
            unit="s",
            width=10,
        ),
        Panel(
            "timeseries",
            "Flower: task events",
            "Rate of Celery task events Flower receives, by event type. Empty if workers do not "
            "send events (-E).",
            ((f"sum by (type) (rate({FLOWER_EVENTS_TOTAL}[$__rate_interval]))", "{{type}}"),),
            unit="ops",
            width=8,
        ),
        Row("Load generator"),
        Panel(
            "timeseries",
            "Loadgen runs by outcome",
            "Rate of runs the load generator fired per scenario and outcome (success, failure, "
            "timeout) over 5 minutes.",
            ((on_scenario(n.RULE_LOADGEN_RUNS_RATE5M), "{{scenario}} {{outcome}}"),),
            unit="ops",
            width=6,
        ),
        Panel(
            "timeseries",
            "Loadgen run duration p50 / p99",
            "Round-trip time of a loadgen run (send to result) per scenario: task time plus "
            "queueing and broker latency.",
            (
                (quantile(0.5, "scenario", LOADGEN_DURATION_BUCKETS), "{{scenario}} p50"),
                (quantile(0.99, "scenario", LOADGEN_DURATION_BUCKETS), "{{scenario}} p99"),
            ),
            unit="s",
            width=6,
        ),
        Panel(
            "stat",
            "Loadgen skipped runs (selected range)",
            "Runs the load generator skipped over the time range because the scenario's "
            "previous run was still in flight. Non-zero means the schedule is too tight.",
            (
                (
                    "sum by (scenario) "
                    f"(increase({on_scenario(n.LOADGEN_SKIPPED_TOTAL)}[$__range]))",
                    "{{scenario}}",
                ),
            ),
            unit="short",
            width=6,
            decimals=0,
        ),
        Panel(
            "stat",
            "Time since last loadgen run",
            "Seconds since the load generator last fired each scenario. Growing steadily means "
            "the loadgen stopped or skips this scenario.",
            (
                (
                    # "> 0": a loadgen that has not fired yet exports 0, not "55 years ago".
                    "time() - (max by (scenario) "
                    f"({on_scenario(n.LOADGEN_LAST_RUN_TIMESTAMP_SECONDS)}) > 0)",
                    "{{scenario}}",
                ),
            ),
            unit="s",
            width=6,
            decimals=0,
        ),
    ),
)
