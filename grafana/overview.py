"""Panels of the overview dashboard: memory and time per pool + strategy, live (1 h)."""

from __future__ import annotations

import membench.prometheus.mixin as mixin
from membench.exporter import names as n
from membench.grafana.kinds import process_series, scenario_series, stat, timeseries
from membench.grafana.records import (
    FLOWER_EVENTS_TOTAL,
    FLOWER_TASK_RUNTIME,
    FLOWER_WORKER_ONLINE,
    PROCESS,
    Dashboard,
    Panel,
    Row,
    alert_steps,
    on_flower,
    on_loadgen,
    on_process,
    per_process,
    per_scenario,
    quantile,
    range_increase,
    range_peak,
    scenario_max,
)
from membench.units import MIB

# Worker targets only: file_sd and the Kubernetes relabelling give them a scenario label.
WORKERS_UP = f'up{{{PROCESS}, scenario!=""}}'
FLOWER_RUNTIME_BUCKETS = on_flower(f"{FLOWER_TASK_RUNTIME}_bucket")
LOADGEN_DURATION_BUCKETS = on_loadgen(f"{n.LOADGEN_RUN_DURATION_SECONDS}_bucket")


OVERVIEW = Dashboard(
    uid="membench-overview",
    title="celery-membench: overview",
    description=(
        "Which Celery pool + in-task concurrency model uses how much memory and time, live."
    ),
    time_from="now-1h",
    refresh="10s",
    flower=True,
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
                (scenario_max(n.RULE_TASK_LAST_DURATION_MAX), "Execution Time (s)"),
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
                per_scenario(range_peak(n.RULE_TREE_RSS_SUM), "RSS"),
                per_scenario(range_peak(n.RULE_TREE_PSS_SUM), "PSS"),
            ),
            unit="bytes",
        ),
        Row("Memory over time"),
        scenario_series(
            "Worker-tree RSS per approach",
            "Sum of resident set size over the scenario's worker processes (prefork: parent + "
            "children; gevent: one process). What the original benchmark compares; shared pages "
            "are counted once per process.",
            "bytes",
            n.RULE_TREE_RSS_SUM,
            height=9,
        ),
        scenario_series(
            "Worker-tree PSS per approach",
            "Sum of proportional set size over the scenario's worker processes: pages shared "
            "between a prefork parent and its children are split between them, so this is the "
            "tree's real footprint without double counting.",
            "bytes",
            n.RULE_TREE_PSS_SUM,
            height=9,
        ),
        process_series(
            "Exact task peak RSS per process",
            "Peak RSS of the last task run in each process, exact: the kernel's VmHWM is reset "
            "at task start and read at task end. Changes only when a task finishes.",
            "bytes",
            n.TASK_PEAK_RSS_BYTES,
            stepped=True,
        ),
        process_series(
            "RSS per worker process",
            "Resident set size of each worker process (main and each prefork child), read from "
            "/proc at scrape time. Use the instance variable to isolate one process.",
            "bytes",
            n.PROCESS_RSS_BYTES,
        ),
        Row("Task duration"),
        scenario_series(
            "Task duration p50 / p90 / p99 per approach",
            "Quantiles of process_batch wall time from the workers' histogram over 5 minutes "
            "(recording rules). Gaps mean no task finished in that window.",
            "s",
            {
                "p50": n.RULE_TASK_DURATION_P50_5M,
                "p90": n.RULE_TASK_DURATION_P90_5M,
                "p99": n.RULE_TASK_DURATION_P99_5M,
            },
            width=16,
        ),
        stat(
            "Last task duration per approach",
            "Wall time of the most recent process_batch run in each scenario (the Execution "
            "Time column of the original table).",
            "s",
            per_scenario(scenario_max(n.RULE_TASK_LAST_DURATION_MAX)),
            decimals=2,
        ),
        Row("Tasks and workers"),
        timeseries(
            "In-flight tasks and subtasks",
            "Tasks and subtasks currently executing per scenario. Concurrent strategies hold "
            "min(workers, subtasks) subtasks at once; the sequential one holds one.",
            "short",
            per_scenario(f"sum by (scenario) ({on_process(n.TASKS_IN_PROGRESS)})", "tasks"),
            per_scenario(f"sum by (scenario) ({on_process(n.SUBTASKS_IN_PROGRESS)})", "subtasks"),
            width=8,
            stepped=True,
        ),
        scenario_series(
            "Task runs by outcome",
            "Rate of finished process_batch runs per scenario and outcome (success, failure, "
            "lost, rejected) over 5 minutes.",
            "ops",
            {"{{outcome}}": n.RULE_TASK_RUNS_RATE5M},
            width=8,
        ),
        stat(
            "Worker scrape targets up",
            "Worker exporter targets Prometheus scrapes successfully, by scenario and role. A "
            "prefork worker has one main and one target per child; a missing child means its "
            "exporter did not bind.",
            "short",
            per_scenario(f"sum by (scenario, role) ({WORKERS_UP})", "{{role}}"),
            width=4,
        ),
        stat(
            "Worker scrape targets down",
            "Worker exporter targets Prometheus fails to scrape, by scenario and role: 0 when "
            f"all is well. Orange from 1, as {mixin.WORKER_TARGET_DOWN} (a warning) fires once "
            "one stays down.",
            "short",
            # `== bool 0` counts 0 for a healthy target, so all-well reads 0, not "No data".
            per_scenario(f"sum by (scenario, role) ({WORKERS_UP} == bool 0)", "{{role}}"),
            width=4,
            thresholds=alert_steps(1),
        ),
        process_series(
            "OS threads per worker process",
            "Kernel threads of each worker process. A gevent worker runs its task on 2 OS threads "
            "even with the thread strategy (monkey-patched to greenlets); a prefork child running "
            "a thread pool has workers + 2.",
            "short",
            n.PROCESS_THREADS,
            stepped=True,
        ),
        timeseries(
            "CPU per worker process",
            "CPU time per second used by each worker process (1.0 = one core busy).",
            "percentunit",
            per_process(f"rate({on_process(n.PROCESS_CPU_SECONDS_TOTAL)}[$__rate_interval])"),
        ),
        Row("Flower"),
        stat(
            "Flower: workers online",
            "Workers the chosen Flower ($flower_job) has seen come online (from worker events) "
            "and all workers it knows. Flower labels by worker hostname, not scenario, so the "
            "scenario filter does not apply.",
            "short",
            (f"sum({on_flower(FLOWER_WORKER_ONLINE)})", "online"),
            (f"count({on_flower(FLOWER_WORKER_ONLINE)})", "known"),
            width=6,
        ),
        timeseries(
            "Flower: task runtime p50 / p99",
            "Task runtime as Celery reports it in task-succeeded events (Flower's histogram), by "
            "worker hostname. A cross-check of the workers' own duration histogram.",
            "s",
            (quantile(0.5, "worker", on_flower(f"{FLOWER_TASK_RUNTIME}_bucket")), "{{worker}} p50"),
            (
                quantile(0.99, "worker", on_flower(f"{FLOWER_TASK_RUNTIME}_bucket")),
                "{{worker}} p99",
            ),
            width=10,
        ),
        timeseries(
            "Flower: task events",
            "Rate of Celery task events Flower receives, by event type. Empty if workers do not "
            "send events (-E).",
            "ops",
            (
                f"sum by (type) (rate({on_flower(FLOWER_EVENTS_TOTAL)}[$__rate_interval]))",
                "{{type}}",
            ),
            width=8,
        ),
        Row("Load generator"),
        scenario_series(
            "Loadgen runs by outcome",
            "Rate of runs the load generator fired per scenario and outcome (success, failure, "
            "timeout) over 5 minutes.",
            "ops",
            {"{{outcome}}": n.RULE_LOADGEN_RUNS_RATE5M},
            select=on_loadgen,
            width=6,
        ),
        timeseries(
            "Loadgen run duration p50 / p99",
            "Round-trip time of a loadgen run (send to result) per scenario: task time plus "
            "queueing and broker latency.",
            "s",
            per_scenario(quantile(0.5, "scenario", LOADGEN_DURATION_BUCKETS), "p50"),
            per_scenario(quantile(0.99, "scenario", LOADGEN_DURATION_BUCKETS), "p99"),
            width=6,
        ),
        stat(
            "Loadgen skipped runs (selected range)",
            "Runs the load generator skipped over the time range because the scenario's "
            "previous run was still in flight. Non-zero means the schedule is too tight "
            f"(orange: {mixin.LOADGEN_SKIPPING} fires on any skip).",
            "short",
            per_scenario(range_increase(on_loadgen(n.LOADGEN_SKIPPED_TOTAL))),
            width=6,
            decimals=0,
            thresholds=alert_steps(1),
        ),
        stat(
            "Time since last loadgen run",
            "Seconds since the load generator last fired each scenario. Growing steadily means "
            "the loadgen stopped or skips this scenario.",
            "s",
            # "> 0": a loadgen that has not fired yet exports 0, not "55 years ago".
            per_scenario(
                "time() - (max by (scenario) "
                f"({on_loadgen(n.LOADGEN_LAST_RUN_TIMESTAMP_SECONDS)}) > 0)"
            ),
            width=6,
            decimals=0,
        ),
    ),
)
