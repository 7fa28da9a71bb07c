"""Panels of the soak dashboard: idle baselines, growth, series count, loadgen health (24 h)."""

from __future__ import annotations

import membench.prometheus.mixin as mixin
from membench.exporter import names as n
from membench.grafana.kinds import per_hour, process_series, scenario_series, stat, timeseries
from membench.grafana.records import (
    COMMON,
    LOADGEN,
    Dashboard,
    Row,
    alert_steps,
    on_loadgen,
    on_process,
    on_scenario,
    per_process,
    per_scenario,
    range_increase,
)
from membench.units import MIB

# Soak panels compare the start of the range with its end, so legends show the first value too.
FIRST_LAST_MAX = ("firstNotNull", "lastNotNull", "max")
# deriv is bytes per second; a leak reads better per hour, in MiB.
GROWTH_MIB_PER_HOUR = f"{on_scenario(n.RULE_TREE_RSS_DERIV1H)} * 3600 / {MIB}"
# No recording rule for PSS: the same expression as the RSS min15m rule.
PSS_MIN15M = (
    f"sum by (scenario) (min_over_time({on_process(n.PROCESS_PSS_BYTES)}[15m]) "
    f"and {on_process(n.PROCESS_PSS_BYTES)})"
)
LOADGEN_TIMEOUTS = f'{n.LOADGEN_RUNS_TOTAL}{{{LOADGEN}, outcome="timeout"}}'


SOAK = Dashboard(
    uid="membench-soak",
    title="celery-membench: soak",
    description=(
        "Long-running view: idle memory baselines, their growth, exporter footprint, series "
        "count and load generator health per approach."
    ),
    time_from="now-24h",
    refresh="1m",
    items=(
        Row("Memory baselines"),
        scenario_series(
            "Idle baseline tree RSS per approach (min over 15m)",
            "Each live worker process's lowest RSS in the last 15 minutes, summed per tree: what "
            "the tree holds between tasks. A rising line is memory the worker never gives back.",
            "bytes",
            n.RULE_TREE_RSS_MIN15M,
            height=9,
            legend_calcs=FIRST_LAST_MAX,
        ),
        timeseries(
            "Idle baseline tree PSS per approach (min over 15m)",
            "The same floor in PSS (shared pages counted once): each live process's 15-minute "
            "minimum, summed per tree.",
            "bytes",
            per_scenario(PSS_MIN15M),
            height=9,
            legend_calcs=FIRST_LAST_MAX,
        ),
        timeseries(
            "Baseline growth per approach",
            "Slope of the idle RSS baseline over the last hour (deriv of the 15-minute minimum), "
            "in MiB per hour. Around zero is healthy; a lasting positive slope is a leak or "
            "allocator fragmentation.",
            "suffix: MiB/h",
            per_scenario(GROWTH_MIB_PER_HOUR),
            width=16,
            legend_calcs=("mean", "lastNotNull", "max"),
        ),
        stat(
            "Current baseline growth",
            "Latest slope of the idle RSS baseline per scenario, MiB per hour. Orange from "
            f"{mixin.SOAK_GROWTH_MIB_PER_HOUR} MiB/h, the threshold of "
            f"{mixin.SOAK_MEMORY_GROWTH} (which also waits for it to last).",
            "suffix: MiB/h",
            per_scenario(GROWTH_MIB_PER_HOUR),
            decimals=2,
            thresholds=alert_steps(mixin.SOAK_GROWTH_MIB_PER_HOUR),
        ),
        scenario_series(
            "Hourly peak tree RSS / PSS per approach",
            "Highest worker-tree RSS and PSS sum in each trailing hour: the envelope of task "
            "peaks above the idle baseline.",
            "bytes",
            {"RSS": n.RULE_TREE_RSS_MAX1H, "PSS": n.RULE_TREE_PSS_MAX1H},
        ),
        process_series(
            "Worker process RSS by role (main / child)",
            "RSS of each exporting worker process, main and prefork children separately: shows "
            "whether growth sits in the parent or in the children.",
            "bytes",
            n.PROCESS_RSS_BYTES,
            legend_calcs=FIRST_LAST_MAX,
        ),
        Row("Health"),
        timeseries(
            "Series count (membench_*)",
            "Number of membench_* series Prometheus holds. Labels carry no pid or task id, so "
            "this must stay flat; growth means a label leaks per-run values.",
            "short",
            (f'count({{__name__=~"{n.PREFIX}_.*", {COMMON}}})', "series"),
            width=8,
        ),
        stat(
            "Loadgen skipped and timed-out runs (selected range)",
            "Runs the load generator skipped (previous run still in flight) and runs that "
            "timed out, per scenario, over the time range. Orange from 1: "
            f"{mixin.LOADGEN_SKIPPING} and {mixin.LOADGEN_RUN_FAILURES} fire on any.",
            "short",
            per_scenario(range_increase(on_loadgen(n.LOADGEN_SKIPPED_TOTAL)), "skipped"),
            per_scenario(range_increase(LOADGEN_TIMEOUTS), "timeout"),
            decimals=0,
            thresholds=alert_steps(1),
        ),
        scenario_series(
            "Loadgen skipped runs per hour",
            "Skipped loadgen runs in each trailing hour, per scenario (recording rule).",
            "short",
            n.RULE_LOADGEN_SKIPPED_INCREASE1H,
            select=on_loadgen,
            width=8,
        ),
        per_hour(
            "Task runs by outcome (per hour)",
            "Finished process_batch runs per hour, by scenario and outcome (5-minute rate scaled "
            "to an hour).",
            n.RULE_TASK_RUNS_RATE5M,
        ),
        per_hour(
            "Loadgen runs by outcome (per hour)",
            "Load generator runs per hour, by scenario and outcome (success, failure, timeout).",
            n.RULE_LOADGEN_RUNS_RATE5M,
            select=on_loadgen,
        ),
        scenario_series(
            "Task duration p90 and mean (5m)",
            "Whether tasks slow down over a long run: 5-minute p90 and mean wall time per "
            "scenario.",
            "s",
            {"p90": n.RULE_TASK_DURATION_P90_5M, "mean": n.RULE_TASK_DURATION_MEAN5M},
            legend_calcs=("mean", "max"),
        ),
        timeseries(
            "OS threads and swap per worker process",
            "Thread count (a leak shows as a climb) and swapped-out bytes of each worker process.",
            "short",
            per_process(on_process(n.PROCESS_THREADS), "threads"),
            per_process(on_process(n.PROCESS_SWAP_BYTES), "swap"),
            # Threads are a count and swap is bytes: the swap series get their own unit.
            overrides=((".* swap$", "unit", "bytes"),),
        ),
    ),
)
