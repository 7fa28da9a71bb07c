"""Every metric and label name celery-membench exports, in one place.

Rules, dashboards, tests and the loadgen import these; nothing else spells a metric name.
Recording-rule names are defined in prometheus/rules/ and mirrored here for Python code.
"""

PREFIX = "membench"

# Per process, read from /proc at scrape time.
PROCESS_RSS_BYTES = "membench_process_rss_bytes"
PROCESS_PSS_BYTES = "membench_process_pss_bytes"
PROCESS_USS_BYTES = "membench_process_uss_bytes"
PROCESS_SWAP_BYTES = "membench_process_swap_bytes"
PROCESS_PEAK_RSS_BYTES = "membench_process_peak_rss_bytes"
PROCESS_THREADS = "membench_process_threads"
PROCESS_CPU_SECONDS_TOTAL = "membench_process_cpu_seconds_total"

# The process's own memory cgroup, read at scrape time (membench/cgroup.py). Every process in
# one cgroup exports the same values: aggregate with max, never sum. v1 and v2 give the same
# names: usage = memory.current | memory.usage_in_bytes, peak = memory.peak |
# memory.max_usage_in_bytes, anon = memory.stat anon | total_rss, file = file | total_cache.
CGROUP_MEMORY_USAGE_BYTES = "membench_cgroup_memory_usage_bytes"
CGROUP_MEMORY_PEAK_BYTES = "membench_cgroup_memory_peak_bytes"
CGROUP_MEMORY_ANON_BYTES = "membench_cgroup_memory_anon_bytes"
CGROUP_MEMORY_FILE_BYTES = "membench_cgroup_memory_file_bytes"
# = 1 with the cgroup version ("1" or "2"); no path label: it holds container ids that change
# at every restart (a new series each time) and reads `/` inside a cgroup namespace.
CGROUP_INFO = "membench_cgroup_info"
CGROUP_VERSION_LABEL = "version"

# The cgroup's limit and its OOM kills (v2 memory.max / memory.events oom_kill, v1
# memory.limit_in_bytes / memory.oom_control oom_kill). No limit (v2 "max", v1's huge number):
# no sample, so `usage / limit` is empty rather than a tiny ratio.
CGROUP_MEMORY_LIMIT_BYTES = "membench_cgroup_memory_limit_bytes"
CGROUP_OOM_KILLS_TOTAL = "membench_cgroup_oom_kills_total"

# Per process, kept by the instrument.
PROCESS_TASKS_IN_PROGRESS = "membench_process_tasks_in_progress"
PROCESS_START_TIME_SECONDS = "membench_process_start_time_seconds"

# Per worker and task name (label `task`), summed over the worker's processes and served by the
# main process only: a prefork child's runs are counted once per worker, not once per child.
TASKS_IN_PROGRESS = "membench_tasks_in_progress"
TASK_RUNS_TOTAL = "membench_task_runs_total"
TASK_DURATION_SECONDS = "membench_task_duration_seconds"
TASK_LAST_DURATION_SECONDS = "membench_task_last_duration_seconds"
# Exact: VmHWM reset when the task started, read when it ended, in a process that ran no other
# task meanwhile (always so in prefork children and solo). The last such run of the task.
TASK_PEAK_RSS_BYTES = "membench_task_peak_rss_bytes"
# Shared: the process's peak over a window in which other tasks also ran (gevent, threads,
# eventlet): an upper bound of the task's own peak, never the task's own.
TASK_WINDOW_PEAK_RSS_BYTES = "membench_task_window_peak_rss_bytes"
# RSS after the task minus before it, summed over the task's exact runs in the live processes:
# rises run after run for a task that leaks, stays near 0 for one that does not.
TASK_RETAINED_BYTES = "membench_task_retained_bytes"
# Prefork children that exited and were replaced, by why (RECYCLE_REASONS).
CHILD_RECYCLES_TOTAL = "membench_worker_child_recycles_total"

# The benchmark's own task: its scenario rules and `membench report` read this `task` only (the
# runner's helper tasks, e.g. loading a payload, run in the same workers).
BENCHMARK_TASK = "membench.process_batch"

# Benchmark only (process_batch's subtasks), per process.
SUBTASKS_IN_PROGRESS = "membench_subtasks_in_progress"
SUBTASKS_COMPLETED_TOTAL = "membench_subtasks_completed_total"

# Identity of the exporting process.
WORKER_INFO = "membench_worker_info"

# Load generator.
LOADGEN_RUNS_TOTAL = "membench_loadgen_runs_total"
LOADGEN_RUN_DURATION_SECONDS = "membench_loadgen_run_duration_seconds"
LOADGEN_SKIPPED_TOTAL = "membench_loadgen_skipped_total"
LOADGEN_LAST_RUN_TIMESTAMP_SECONDS = "membench_loadgen_last_run_timestamp_seconds"

# Labels every worker series carries. No pid or task id: series count must not grow with time.
# `child` is the prefork pool index ("" for the main process): bounded by the concurrency.
PROCESS_LABELS = ("pool", "role", "child")
# The benchmark's workers add their scenario's identity.
SCENARIO_LABELS = ("scenario", "strategy")
IDENTITY_LABELS = ("scenario", "pool", "strategy", "role")
OUTCOME_LABEL = "outcome"
TASK_LABEL = "task"
REASON_LABEL = "reason"

ROLE_MAIN = "main"
ROLE_CHILD = "child"

# Outcomes of a task run: from task_postrun's state in the process that ran it (`rejected`:
# Celery's Reject); `revoked` and
# `lost` (its prefork child died: WorkerLostError) are seen by the main process.
TASK_OUTCOMES = ("success", "failure", "retry", "rejected", "revoked", "lost")
# Why a prefork child was replaced: it reached --max-tasks-per-child, it went over
# --max-memory-per-child, or it died (killed, crashed, OOM-killed) without saying why.
RECYCLE_REASONS = ("max-tasks-per-child", "max-memory-per-child", "died")
# The `task` value of every task name past the bound or outside the app's registered tasks.
OTHER_TASK = "<other>"

TASK_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# Recording rules (level:metric:operations), defined in prometheus/rules/membench.rules.yml.
# "scenario" level = by (scenario, pool, strategy); "scenario_outcome" = by (scenario, outcome).
# Python code uses these constants instead of retyping a rule name; tests/test_grafana.py
# checks that RECORDING_RULES is exactly the set of `record:` names in that file.
RULE_TREE_RSS_SUM = "scenario:membench_tree_rss_bytes:sum"
RULE_TREE_PSS_SUM = "scenario:membench_tree_pss_bytes:sum"
RULE_TREE_USS_SUM = "scenario:membench_tree_uss_bytes:sum"
RULE_TREE_RSS_MAX5M = "scenario:membench_tree_rss_bytes:max5m"
RULE_TREE_RSS_MAX1H = "scenario:membench_tree_rss_bytes:max1h"
RULE_TREE_PSS_MAX5M = "scenario:membench_tree_pss_bytes:max5m"
RULE_TREE_PSS_MAX1H = "scenario:membench_tree_pss_bytes:max1h"
RULE_TREE_RSS_MIN15M = "scenario:membench_tree_rss_bytes:min15m"
RULE_TREE_RSS_DERIV1H = "scenario:membench_tree_rss_bytes:deriv1h"
RULE_TASK_PEAK_RSS_MAX = "scenario:membench_task_peak_rss_bytes:max"
RULE_TASK_LAST_DURATION_MAX = "scenario:membench_task_last_duration_seconds:max"
RULE_TASK_DURATION_P50_5M = "scenario:membench_task_duration_seconds:p50_5m"
RULE_TASK_DURATION_P90_5M = "scenario:membench_task_duration_seconds:p90_5m"
RULE_TASK_DURATION_P99_5M = "scenario:membench_task_duration_seconds:p99_5m"
RULE_TASK_DURATION_MEAN5M = "scenario:membench_task_duration_seconds:mean5m"
RULE_TASK_RUNS_RATE5M = "scenario_outcome:membench_task_runs:rate5m"
RULE_LOADGEN_RUNS_RATE5M = "scenario_outcome:membench_loadgen_runs:rate5m"
RULE_LOADGEN_SKIPPED_INCREASE1H = "scenario:membench_loadgen_skipped:increase1h"

RECORDING_RULES = (
    RULE_TREE_RSS_SUM,
    RULE_TREE_PSS_SUM,
    RULE_TREE_USS_SUM,
    RULE_TREE_RSS_MAX5M,
    RULE_TREE_RSS_MAX1H,
    RULE_TREE_PSS_MAX5M,
    RULE_TREE_PSS_MAX1H,
    RULE_TREE_RSS_MIN15M,
    RULE_TREE_RSS_DERIV1H,
    RULE_TASK_PEAK_RSS_MAX,
    RULE_TASK_LAST_DURATION_MAX,
    RULE_TASK_DURATION_P50_5M,
    RULE_TASK_DURATION_P90_5M,
    RULE_TASK_DURATION_P99_5M,
    RULE_TASK_DURATION_MEAN5M,
    RULE_TASK_RUNS_RATE5M,
    RULE_LOADGEN_RUNS_RATE5M,
    RULE_LOADGEN_SKIPPED_INCREASE1H,
)
