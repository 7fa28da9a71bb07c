"""The recording rules: per-scenario tree sums, peaks, baselines and task figures, built from
exporter/names.py and the mixin's settings (which series, which labels every aggregation keeps).

Rule names are `level:metric:operations` ("scenario" level = by the group labels plus scenario,
pool and strategy); names.py mirrors them for Python code. No rule lists scenario ids, so new
scenarios show up without edits.
"""

from __future__ import annotations

from typing import Any

from membench.exporter import names as n
from membench.prometheus.mixin import Settings

SCENARIO_LABELS = ("scenario", "pool", "strategy")


def record(name: str, expr: str) -> dict[str, Any]:
    return {"record": name, "expr": expr}


def tree_memory(s: Settings) -> dict[str, Any]:
    by_scenario = s.by(*SCENARIO_LABELS)
    rss = s.series(n.PROCESS_RSS_BYTES)
    return {
        "name": "membench-tree-memory",
        "rules": [
            # A worker is a process tree (prefork: parent + children; gevent: one process). RSS
            # counts shared pages once per process; PSS splits them: the tree's real footprint.
            record(n.RULE_TREE_RSS_SUM, f"sum {by_scenario} ({rss})"),
            record(n.RULE_TREE_PSS_SUM, f"sum {by_scenario} ({s.series(n.PROCESS_PSS_BYTES)})"),
            record(n.RULE_TREE_USS_SUM, f"sum {by_scenario} ({s.series(n.PROCESS_USS_BYTES)})"),
            # Peaks over the sums above (a group's rules run in order): sampled, at scrape
            # resolution; membench_task_peak_rss_bytes is the exact one.
            record(n.RULE_TREE_RSS_MAX5M, f"max_over_time({n.RULE_TREE_RSS_SUM}[5m])"),
            record(n.RULE_TREE_RSS_MAX1H, f"max_over_time({n.RULE_TREE_RSS_SUM}[1h])"),
            record(n.RULE_TREE_PSS_MAX5M, f"max_over_time({n.RULE_TREE_PSS_SUM}[5m])"),
            record(n.RULE_TREE_PSS_MAX1H, f"max_over_time({n.RULE_TREE_PSS_SUM}[1h])"),
            # Idle baseline: each live process's 15-minute floor, then the sum (the floor of the
            # sum would keep, for 15 min, a sum taken while a child was not scraped yet); `and`
            # drops processes gone since, so a replaced child stops counting.
            record(
                n.RULE_TREE_RSS_MIN15M,
                f"sum {by_scenario} (\n  min_over_time({rss}[15m]) and {rss}\n)",
            ),
            # Soak growth of the baseline, bytes per second (least-squares slope over 1 h).
            record(n.RULE_TREE_RSS_DERIV1H, f"deriv({n.RULE_TREE_RSS_MIN15M}[1h])"),
        ],
    }


def tasks(s: Settings) -> dict[str, Any]:
    by_scenario = s.by(*SCENARIO_LABELS)
    task = f'{n.TASK_LABEL}="{n.BENCHMARK_TASK}"'

    def quantile(q: float) -> str:
        buckets = s.series(f"{n.TASK_DURATION_SECONDS}_bucket", task)
        by_le = s.by(*SCENARIO_LABELS, "le")
        return f"histogram_quantile({q},\n  sum {by_le} (rate({buckets}[5m])))"

    rate_sum = f"rate({s.series(f'{n.TASK_DURATION_SECONDS}_sum', task)}[5m])"
    rate_count = f"rate({s.series(f'{n.TASK_DURATION_SECONDS}_count', task)}[5m])"
    return {
        "name": "membench-tasks",
        "rules": [
            # The exact peak of the last run (VmHWM reset at task start), whichever process ran it.
            record(
                n.RULE_TASK_PEAK_RSS_MAX,
                f"max {by_scenario} ({s.series(n.TASK_PEAK_RSS_BYTES, task)})",
            ),
            record(
                n.RULE_TASK_LAST_DURATION_MAX,
                f"max {by_scenario} ({s.series(n.TASK_LAST_DURATION_SECONDS, task)})",
            ),
            record(n.RULE_TASK_DURATION_P50_5M, quantile(0.5)),
            record(n.RULE_TASK_DURATION_P90_5M, quantile(0.9)),
            record(n.RULE_TASK_DURATION_P99_5M, quantile(0.99)),
            # "> 0" on the divisor: an idle scenario yields no series instead of NaN (0/0).
            record(
                n.RULE_TASK_DURATION_MEAN5M,
                f"sum {by_scenario} ({rate_sum})\n/\n(sum {by_scenario} ({rate_count}) > 0)",
            ),
            record(
                n.RULE_TASK_RUNS_RATE5M,
                f"sum {s.by('scenario', n.OUTCOME_LABEL)} "
                f"(rate({s.series(n.TASK_RUNS_TOTAL, task)}[5m]))",
            ),
        ],
    }


def loadgen(s: Settings) -> dict[str, Any]:
    return {
        "name": "membench-loadgen",
        "rules": [
            record(
                n.RULE_LOADGEN_RUNS_RATE5M,
                f"sum {s.by('scenario', n.OUTCOME_LABEL)} "
                f"(rate({s.series(n.LOADGEN_RUNS_TOTAL)}[5m]))",
            ),
            record(
                n.RULE_LOADGEN_SKIPPED_INCREASE1H,
                f"sum {s.by('scenario')} (increase({s.series(n.LOADGEN_SKIPPED_TOTAL)}[1h]))",
            ),
        ],
    }


def recording_groups(s: Settings) -> list[dict[str, Any]]:
    return [tree_memory(s), tasks(s), loadgen(s)]
