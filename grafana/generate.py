"""Build the celery-membench Grafana dashboards with grafana-foundation-sdk and write their JSON.

`python grafana/generate.py` rewrites grafana/dashboards/*.json; `--check` exits 1 when stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from membench.exporter import names as n

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

DATASOURCE_UID = "membench-prometheus"
DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
OVERVIEW_UID = "membench-overview"
SOAK_UID = "membench-soak"
TAG = "membench"

# Recording rules from the shared contract (prometheus/rules/*.yml); spelled once, here.
TREE_RSS = "scenario:membench_tree_rss_bytes:sum"
TREE_PSS = "scenario:membench_tree_pss_bytes:sum"
TREE_RSS_MAX1H = "scenario:membench_tree_rss_bytes:max1h"
TREE_PSS_MAX1H = "scenario:membench_tree_pss_bytes:max1h"
TREE_RSS_MIN15M = "scenario:membench_tree_rss_bytes:min15m"
TREE_RSS_DERIV1H = "scenario:membench_tree_rss_bytes:deriv1h"
TASK_PEAK_MAX = "scenario:membench_task_peak_rss_bytes:max"
TASK_LAST_DURATION_MAX = "scenario:membench_task_last_duration_seconds:max"
TASK_DURATION_P50 = "scenario:membench_task_duration_seconds:p50_5m"
TASK_DURATION_P90 = "scenario:membench_task_duration_seconds:p90_5m"
TASK_DURATION_P99 = "scenario:membench_task_duration_seconds:p99_5m"
TASK_DURATION_MEAN = "scenario:membench_task_duration_seconds:mean5m"
TASK_RUNS_RATE = "scenario_outcome:membench_task_runs:rate5m"
LOADGEN_RUNS_RATE = "scenario_outcome:membench_loadgen_runs:rate5m"
LOADGEN_SKIPPED_1H = "scenario:membench_loadgen_skipped:increase1h"

# Flower 2.2's own metric names (flower/events.py, PrometheusMetrics); labelled by worker hostname.
FLOWER_WORKER_ONLINE = "flower_worker_online"
FLOWER_TASK_RUNTIME = "flower_task_runtime_seconds"
FLOWER_EVENTS_TOTAL = "flower_events_total"

WORKERS_JOB = "membench-workers"

# Selectors: rule series keep only scenario/pool/strategy, so only raw per-process series can
# also be narrowed to an instance.
SCENARIO = 'scenario=~"$scenario"'
PROCESS = 'scenario=~"$scenario", instance=~"$instance"'
MIB = 1048576
PROCESS_LEGEND = "{{scenario}} {{role}} ({{instance}})"


class Ids:
    """Hands out panel ids in build order so the JSON is stable from run to run."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        self._next += 1
        return self._next


def query(
    expr: str, legend: str = "__auto", *, instant: bool = False, table_format: bool = False
) -> prometheus_builders.Dataquery:
    """One Prometheus target; refIds are assigned by `targets` so that panels stay short."""
    target = prometheus_builders.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)
    target = target.instant() if instant else target.range()
    if table_format:
        target = target.format(prometheus_models.PromQueryFormat.TABLE)
    return target


def with_targets(panel: Any, targets: Sequence[Any]) -> Any:
    """Attach targets with refIds A, B, ... (the table transformation relies on them)."""
    for index, target in enumerate(targets):
        panel = panel.with_target(target.ref_id(chr(ord("A") + index)))
    return panel


def base(panel: Any, ids: Ids, title: str, description: str, width: int, height: int) -> Any:
    return (
        panel.id(ids())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
    )


def legend_table(calcs: list[str]) -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(calcs)
    )


def timeseries_panel(
    ids: Ids,
    title: str,
    description: str,
    targets: Sequence[Any],
    *,
    unit: str,
    width: int = 12,
    height: int = 8,
    stepped: bool = False,
    legend_calcs: list[str] | None = None,
) -> timeseries.Panel:
    panel = (
        base(timeseries.Panel(), ids, title, description, width, height)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(legend_table(legend_calcs or ["lastNotNull", "max"]))
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if stepped:
        # Last-value gauges change only when a task ends; a ramp between scrapes would lie.
        panel = panel.line_interpolation(common.LineInterpolation.STEP_AFTER)
    return with_targets(panel, targets)


def reduce_last() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def stat_panel(
    ids: Ids,
    title: str,
    description: str,
    targets: Sequence[Any],
    *,
    unit: str,
    width: int = 8,
    height: int = 8,
    decimals: int | None = None,
) -> stat.Panel:
    panel = (
        base(stat.Panel(), ids, title, description, width, height)
        .unit(unit)
        .reduce_options(reduce_last())
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(common.BigValueColorMode.VALUE)
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    return with_targets(panel, targets)


def bargauge_panel(
    ids: Ids,
    title: str,
    description: str,
    targets: Sequence[Any],
    *,
    unit: str,
    width: int = 10,
    height: int = 8,
) -> bargauge.Panel:
    panel = (
        base(bargauge.Panel(), ids, title, description, width, height)
        .unit(unit)
        .min(0)
        .reduce_options(reduce_last())
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
    )
    return with_targets(panel, targets)


def row(ids: Ids, title: str) -> dashboard_builders.Row:
    return dashboard_builders.Row(title).id(ids())


def variables() -> list[dashboard_builders.QueryVariable]:
    """`scenario` then `instance` (chained), multi-select with All as `.*` so new scenarios show."""
    all_option = dashboard_models.VariableOption(selected=True, text="All", value="$__all")
    scenario = (
        dashboard_builders.QueryVariable("scenario")
        .label("Scenario")
        .description("Celery pool + in-task strategy (one worker and queue per scenario).")
        .datasource(DATASOURCE)
        .query(f"label_values({n.WORKER_INFO}, scenario)")
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(all_option)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )
    instance = (
        dashboard_builders.QueryVariable("instance")
        .label("Worker process")
        .description("Exporter endpoint (host:port) of one worker process: main or prefork child.")
        .datasource(DATASOURCE)
        .query(f"label_values({n.WORKER_INFO}{{{SCENARIO}}}, instance)")
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(all_option)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )
    return [scenario, instance]


def header(
    title: str, uid: str, description: str, *, time_from: str, refresh: str
) -> dashboard_builders.Dashboard:
    """What both dashboards share: tag, variables, cross-links, built-in annotations."""
    builtin_annotations = (
        dashboard_builders.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(dashboard_models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )
    # `membench loadgen --grafana-url` posts one annotation per run, tagged "membench": show them.
    loadgen_annotations = (
        dashboard_builders.AnnotationQuery()
        .name("Loadgen runs")
        .datasource(dashboard_models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .icon_color("rgba(255, 152, 48, 1)")
        .target(
            dashboard_builders.AnnotationTarget()
            .type("tags")
            .tags([TAG])
            .match_any(False)
            .limit(500)
        )
    )
    return (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .timezone("browser")
        .time(time_from, "now")
        .refresh(refresh)
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .annotation(builtin_annotations)
        .annotation(loadgen_annotations)
        .variables(variables())
        .link(
            dashboard_builders.DashboardLink("membench dashboards")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(False)  # each dashboard has its own natural range (1 h vs 24 h)
        )
    )


def seed_table(ids: Ids) -> table.Panel:
    """The original benchmark's table, live: one row per approach, instant queries merged."""
    columns = [
        (
            "Peak Memory (MB)",
            f"max by (scenario) (max_over_time({TREE_RSS}{{{SCENARIO}}}[$__range])) / {MIB}",
        ),
        (
            "Peak PSS (MB)",
            f"max by (scenario) (max_over_time({TREE_PSS}{{{SCENARIO}}}[$__range])) / {MIB}",
        ),
        (
            "Task Peak RSS (MB)",
            f"max by (scenario) (max_over_time({TASK_PEAK_MAX}{{{SCENARIO}}}[$__range])) / {MIB}",
        ),
        (
            "Execution Time (s)",
            f"max by (scenario) ({TASK_LAST_DURATION_MAX}{{{SCENARIO}}})",
        ),
    ]
    targets = [query(expr, instant=True, table_format=True) for _, expr in columns]
    rename = {"scenario": "Approach"}
    order = {"scenario": 0}
    for index, (label, _) in enumerate(columns):
        value_field = f"Value #{chr(ord('A') + index)}"
        rename[value_field] = label
        order[value_field] = index + 1
    panel = (
        base(
            table.Panel(),
            ids,
            "Benchmark table: peak memory and execution time per approach",
            "The original benchmark's table, live. Peak Memory (MB) = highest worker-tree RSS sum "
            "(main + children, MB = 2^20 bytes) over the selected range, as sampled at scrape "
            "time, the figure the original compares. Peak PSS (MB) = same for PSS (shared pages "
            "counted once). Task Peak RSS (MB) = highest exact per-task peak (VmHWM reset at task "
            "start) of the executing process seen in the range. Execution Time (s) = wall time of "
            "the last task. Sorted by peak memory, lowest first.",
            14,
            8,
        )
        .decimals(2)
        .unit("none")
        .sort_by([common_builders.TableSortByFieldState().display_name("Peak Memory (MB)")])
        .with_transformation(dashboard_models.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dashboard_models.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "includeByName": {},
                    "indexByName": order,
                    "renameByName": rename,
                },
            )
        )
    )
    return with_targets(panel, targets)


def overview() -> dashboard_builders.Dashboard:
    ids = Ids()
    dash = header(
        "celery-membench: overview",
        OVERVIEW_UID,
        "Which Celery pool + in-task concurrency model uses how much memory and time, live.",
        time_from="now-1h",
        refresh="10s",
    )

    dash = dash.with_row(row(ids, "Summary per approach"))
    dash = dash.with_panel(seed_table(ids))
    dash = dash.with_panel(
        bargauge_panel(
            ids,
            "Peak worker-tree memory per approach (selected range)",
            "Highest RSS and PSS sum of each scenario's worker tree over the dashboard's time "
            "range (max_over_time over the recording rule). Sampled at scrape time: a spike "
            "shorter than the scrape interval shows only in the exact task peak.",
            [
                query(
                    f"max by (scenario) (max_over_time({TREE_RSS}{{{SCENARIO}}}[$__range]))",
                    "{{scenario}} RSS",
                    instant=True,
                ),
                query(
                    f"max by (scenario) (max_over_time({TREE_PSS}{{{SCENARIO}}}[$__range]))",
                    "{{scenario}} PSS",
                    instant=True,
                ),
            ],
            unit="bytes",
        )
    )

    dash = dash.with_row(row(ids, "Memory over time"))
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Worker-tree RSS per approach",
            "Sum of resident set size over the scenario's worker processes (prefork: parent + "
            "children; gevent: one process). What the original benchmark compares; shared pages "
            "are counted once per process.",
            [query(f"{TREE_RSS}{{{SCENARIO}}}", "{{scenario}}")],
            unit="bytes",
            height=9,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Worker-tree PSS per approach",
            "Sum of proportional set size over the scenario's worker processes: pages shared "
            "between a prefork parent and its children are split between them, so this is the "
            "tree's real footprint without double counting.",
            [query(f"{TREE_PSS}{{{SCENARIO}}}", "{{scenario}}")],
            unit="bytes",
            height=9,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Exact task peak RSS per process",
            "Peak RSS of the last task run in each process, exact: the kernel's VmHWM is reset "
            "at task start and read at task end. Changes only when a task finishes.",
            [query(f"{n.TASK_PEAK_RSS_BYTES}{{{PROCESS}}}", PROCESS_LEGEND)],
            unit="bytes",
            stepped=True,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "RSS per worker process",
            "Resident set size of each worker process (main and each prefork child), read from "
            "/proc at scrape time. Use the instance variable to isolate one process.",
            [query(f"{n.PROCESS_RSS_BYTES}{{{PROCESS}}}", PROCESS_LEGEND)],
            unit="bytes",
        )
    )

    dash = dash.with_row(row(ids, "Task duration"))
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Task duration p50 / p90 / p99 per approach",
            "Quantiles of process_batch wall time from the workers' histogram over 5 minutes "
            "(recording rules). Gaps mean no task finished in that window.",
            [
                query(f"{TASK_DURATION_P50}{{{SCENARIO}}}", "{{scenario}} p50"),
                query(f"{TASK_DURATION_P90}{{{SCENARIO}}}", "{{scenario}} p90"),
                query(f"{TASK_DURATION_P99}{{{SCENARIO}}}", "{{scenario}} p99"),
            ],
            unit="s",
            width=16,
        )
    )
    dash = dash.with_panel(
        stat_panel(
            ids,
            "Last task duration per approach",
            "Wall time of the most recent process_batch run in each scenario (the Execution "
            "Time column of the original table).",
            [
                query(
                    f"max by (scenario) ({TASK_LAST_DURATION_MAX}{{{SCENARIO}}})",
                    "{{scenario}}",
                    instant=True,
                )
            ],
            unit="s",
            decimals=2,
        )
    )

    dash = dash.with_row(row(ids, "Tasks and workers"))
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "In-flight tasks and subtasks",
            "Tasks and subtasks currently executing per scenario. Concurrent strategies hold "
            "min(workers, subtasks) subtasks at once; the sequential one holds one.",
            [
                query(
                    f"sum by (scenario) ({n.TASKS_IN_PROGRESS}{{{PROCESS}}})",
                    "{{scenario}} tasks",
                ),
                query(
                    f"sum by (scenario) ({n.SUBTASKS_IN_PROGRESS}{{{PROCESS}}})",
                    "{{scenario}} subtasks",
                ),
            ],
            unit="short",
            width=8,
            stepped=True,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Task runs by outcome",
            "Rate of finished process_batch runs per scenario and outcome (success, failure, "
            "lost, rejected) over 5 minutes.",
            [query(f"{TASK_RUNS_RATE}{{{SCENARIO}}}", "{{scenario}} {{outcome}}")],
            unit="ops",
            width=8,
        )
    )
    dash = dash.with_panel(
        stat_panel(
            ids,
            "Worker scrape targets up / down",
            "Worker exporter targets Prometheus scrapes successfully (up) and failing ones "
            "(down), by scenario and role. A prefork worker has one main and one target per "
            "child; a missing child means its exporter did not bind.",
            [
                query(
                    f'sum by (scenario, role) (up{{job="{WORKERS_JOB}", {PROCESS}}})',
                    "{{scenario}} {{role}} up",
                    instant=True,
                ),
                query(
                    f'count by (scenario, role) (up{{job="{WORKERS_JOB}", {PROCESS}}} == 0)',
                    "{{scenario}} {{role}} down",
                    instant=True,
                ),
            ],
            unit="short",
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "OS threads per worker process",
            "Kernel threads of each worker process. A gevent worker runs its task on 2 OS threads "
            "even with the thread strategy (monkey-patched to greenlets); a prefork child running "
            "a thread pool has workers + 2.",
            [query(f"{n.PROCESS_THREADS}{{{PROCESS}}}", PROCESS_LEGEND)],
            unit="short",
            stepped=True,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "CPU per worker process",
            "CPU time per second used by each worker process (1.0 = one core busy).",
            [
                query(
                    f"rate({n.PROCESS_CPU_SECONDS_TOTAL}{{{PROCESS}}}[$__rate_interval])",
                    PROCESS_LEGEND,
                )
            ],
            unit="percentunit",
        )
    )

    dash = dash.with_row(row(ids, "Flower"))
    dash = dash.with_panel(
        stat_panel(
            ids,
            "Flower: workers online",
            "Workers Flower has seen come online (from worker events) and all workers it knows. "
            "Flower labels by worker hostname, not scenario, so the scenario filter does not "
            "apply.",
            [
                query(f"sum({FLOWER_WORKER_ONLINE})", "online", instant=True),
                query(f"count({FLOWER_WORKER_ONLINE})", "known", instant=True),
            ],
            unit="short",
            width=6,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Flower: task runtime p50 / p99",
            "Task runtime as Celery reports it in task-succeeded events (Flower's histogram), by "
            "worker hostname. A cross-check of the workers' own duration histogram.",
            [
                query(
                    "histogram_quantile(0.5, sum by (le, worker) "
                    f"(rate({FLOWER_TASK_RUNTIME}_bucket[$__rate_interval])))",
                    "{{worker}} p50",
                ),
                query(
                    "histogram_quantile(0.99, sum by (le, worker) "
                    f"(rate({FLOWER_TASK_RUNTIME}_bucket[$__rate_interval])))",
                    "{{worker}} p99",
                ),
            ],
            unit="s",
            width=10,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Flower: task events",
            "Rate of Celery task events Flower receives, by event type. Empty if workers do not "
            "send events (-E).",
            [
                query(
                    f"sum by (type) (rate({FLOWER_EVENTS_TOTAL}[$__rate_interval]))",
                    "{{type}}",
                )
            ],
            unit="ops",
            width=8,
        )
    )

    dash = dash.with_row(row(ids, "Load generator"))
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Loadgen runs by outcome",
            "Rate of runs the load generator fired per scenario and outcome (success, failure, "
            "timeout) over 5 minutes.",
            [query(f"{LOADGEN_RUNS_RATE}{{{SCENARIO}}}", "{{scenario}} {{outcome}}")],
            unit="ops",
            width=6,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Loadgen run duration p50 / p99",
            "Round-trip time of a loadgen run (send to result) per scenario: task time plus "
            "queueing and broker latency.",
            [
                query(
                    "histogram_quantile(0.5, sum by (le, scenario) (rate("
                    f"{n.LOADGEN_RUN_DURATION_SECONDS}_bucket{{{SCENARIO}}}[$__rate_interval])))",
                    "{{scenario}} p50",
                ),
                query(
                    "histogram_quantile(0.99, sum by (le, scenario) (rate("
                    f"{n.LOADGEN_RUN_DURATION_SECONDS}_bucket{{{SCENARIO}}}[$__rate_interval])))",
                    "{{scenario}} p99",
                ),
            ],
            unit="s",
            width=6,
        )
    )
    dash = dash.with_panel(
        stat_panel(
            ids,
            "Loadgen skipped runs (selected range)",
            "Runs the load generator skipped over the time range because the scenario's "
            "previous run was still in flight. Non-zero means the schedule is too tight.",
            [
                query(
                    "sum by (scenario) "
                    f"(increase({n.LOADGEN_SKIPPED_TOTAL}{{{SCENARIO}}}[$__range]))",
                    "{{scenario}}",
                    instant=True,
                )
            ],
            unit="short",
            width=6,
            decimals=0,
        )
    )
    dash = dash.with_panel(
        stat_panel(
            ids,
            "Time since last loadgen run",
            "Seconds since the load generator last fired each scenario. Growing steadily means "
            "the loadgen stopped or skips this scenario.",
            [
                query(
                    # "> 0": a loadgen that has not fired yet exports 0, not "55 years ago".
                    "time() - (max by (scenario) "
                    f"({n.LOADGEN_LAST_RUN_TIMESTAMP_SECONDS}{{{SCENARIO}}}) > 0)",
                    "{{scenario}}",
                    instant=True,
                )
            ],
            unit="s",
            width=6,
            decimals=0,
        )
    )
    return dash


def soak() -> dashboard_builders.Dashboard:
    ids = Ids()
    dash = header(
        "celery-membench: soak",
        SOAK_UID,
        "Long-running view: idle memory baselines, their growth, exporter footprint, series "
        "count and load generator health per approach.",
        time_from="now-24h",
        refresh="1m",
    )

    dash = dash.with_row(row(ids, "Memory baselines"))
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Idle baseline tree RSS per approach (min over 15m)",
            "Each live worker process's lowest RSS in the last 15 minutes, summed per tree: what "
            "the tree holds between tasks. A rising line is memory the worker never gives back.",
            [query(f"{TREE_RSS_MIN15M}{{{SCENARIO}}}", "{{scenario}}")],
            unit="bytes",
            height=9,
            legend_calcs=["firstNotNull", "lastNotNull", "max"],
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Idle baseline tree PSS per approach (min over 15m)",
            "The same floor in PSS (shared pages counted once): each live process's 15-minute "
            "minimum, summed per tree.",
            [
                query(
                    f"sum by (scenario) (min_over_time({n.PROCESS_PSS_BYTES}{{{PROCESS}}}[15m]) "
                    f"and {n.PROCESS_PSS_BYTES}{{{PROCESS}}})",
                    "{{scenario}}",
                )
            ],
            unit="bytes",
            height=9,
            legend_calcs=["firstNotNull", "lastNotNull", "max"],
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Baseline growth per approach",
            "Slope of the idle RSS baseline over the last hour (deriv of the 15-minute minimum), "
            "in MiB per hour. Around zero is healthy; a lasting positive slope is a leak or "
            "allocator fragmentation.",
            [query(f"{TREE_RSS_DERIV1H}{{{SCENARIO}}} * 3600 / {MIB}", "{{scenario}}")],
            unit="suffix: MiB/h",
            width=16,
            legend_calcs=["mean", "lastNotNull", "max"],
        )
    )
    dash = dash.with_panel(
        stat_panel(
            ids,
            "Current baseline growth",
            "Latest slope of the idle RSS baseline per scenario, MiB per hour.",
            [
                query(
                    f"{TREE_RSS_DERIV1H}{{{SCENARIO}}} * 3600 / {MIB}",
                    "{{scenario}}",
                    instant=True,
                )
            ],
            unit="suffix: MiB/h",
            decimals=2,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Hourly peak tree RSS / PSS per approach",
            "Highest worker-tree RSS and PSS sum in each trailing hour: the envelope of task "
            "peaks above the idle baseline.",
            [
                query(f"{TREE_RSS_MAX1H}{{{SCENARIO}}}", "{{scenario}} RSS"),
                query(f"{TREE_PSS_MAX1H}{{{SCENARIO}}}", "{{scenario}} PSS"),
            ],
            unit="bytes",
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Worker process RSS by role (main / child)",
            "RSS of each exporting worker process, main and prefork children separately: shows "
            "whether growth sits in the parent or in the children.",
            [query(f"{n.PROCESS_RSS_BYTES}{{{PROCESS}}}", PROCESS_LEGEND)],
            unit="bytes",
            legend_calcs=["firstNotNull", "lastNotNull", "max"],
        )
    )

    dash = dash.with_row(row(ids, "Health"))
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Series count (membench_*)",
            "Number of membench_* series Prometheus holds. Labels carry no pid or task id, so "
            "this must stay flat; growth means a label leaks per-run values.",
            [query('count({__name__=~"membench_.*"})', "series")],
            unit="short",
            width=8,
        )
    )
    dash = dash.with_panel(
        stat_panel(
            ids,
            "Loadgen skipped and timed-out runs (selected range)",
            "Runs the load generator skipped (previous run still in flight) and runs that "
            "timed out, per scenario, over the time range.",
            [
                query(
                    "sum by (scenario) "
                    f"(increase({n.LOADGEN_SKIPPED_TOTAL}{{{SCENARIO}}}[$__range]))",
                    "{{scenario}} skipped",
                    instant=True,
                ),
                query(
                    "sum by (scenario) (increase("
                    f'{n.LOADGEN_RUNS_TOTAL}{{{SCENARIO}, outcome="timeout"}}[$__range]))',
                    "{{scenario}} timeout",
                    instant=True,
                ),
            ],
            unit="short",
            decimals=0,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Loadgen skipped runs per hour",
            "Skipped loadgen runs in each trailing hour, per scenario (recording rule).",
            [query(f"{LOADGEN_SKIPPED_1H}{{{SCENARIO}}}", "{{scenario}}")],
            unit="short",
            width=8,
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Task runs by outcome (per hour)",
            "Finished process_batch runs per hour, by scenario and outcome (5-minute rate scaled "
            "to an hour).",
            [query(f"{TASK_RUNS_RATE}{{{SCENARIO}}} * 3600", "{{scenario}} {{outcome}}")],
            unit="suffix: /h",
            legend_calcs=["mean", "lastNotNull"],
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Loadgen runs by outcome (per hour)",
            "Load generator runs per hour, by scenario and outcome (success, failure, timeout).",
            [query(f"{LOADGEN_RUNS_RATE}{{{SCENARIO}}} * 3600", "{{scenario}} {{outcome}}")],
            unit="suffix: /h",
            legend_calcs=["mean", "lastNotNull"],
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "Task duration p90 and mean (5m)",
            "Whether tasks slow down over a long run: 5-minute p90 and mean wall time per "
            "scenario.",
            [
                query(f"{TASK_DURATION_P90}{{{SCENARIO}}}", "{{scenario}} p90"),
                query(f"{TASK_DURATION_MEAN}{{{SCENARIO}}}", "{{scenario}} mean"),
            ],
            unit="s",
            legend_calcs=["mean", "max"],
        )
    )
    dash = dash.with_panel(
        timeseries_panel(
            ids,
            "OS threads and swap per worker process",
            "Thread count (a leak shows as a climb) and swapped-out bytes of each worker process.",
            [
                query(f"{n.PROCESS_THREADS}{{{PROCESS}}}", PROCESS_LEGEND + " threads"),
                query(f"{n.PROCESS_SWAP_BYTES}{{{PROCESS}}}", PROCESS_LEGEND + " swap"),
            ],
            unit="short",
            legend_calcs=["lastNotNull", "max"],
        ).override_by_regexp(
            ".* swap$", [dashboard_models.DynamicConfigValue(id_val="unit", value="bytes")]
        )
    )
    return dash


BUILDERS: dict[str, Callable[[], dashboard_builders.Dashboard]] = {
    "membench-overview.json": overview,
    "membench-soak.json": soak,
}


def build_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON (plain dicts), built fresh."""
    return {
        name: json.loads(json.dumps(builder().build(), cls=JSONEncoder))
        for name, builder in BUILDERS.items()
    }


def render(dashboard: dict[str, Any]) -> str:
    """The committed form: sorted keys, indent 2, trailing newline, so diffs stay small."""
    return json.dumps(dashboard, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def stale_files(directory: Path) -> list[str]:
    """Names of dashboard files in `directory` that differ from (or are missing versus) a build."""
    stale = []
    for name, dashboard in build_dashboards().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(dashboard):
            stale.append(name)
    return sorted(stale)


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in build_dashboards().items():
        path = directory / name
        path.write_text(render(dashboard), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the JSON on disk differs from a build"
    )
    parser.add_argument("--output-dir", type=Path, default=DASHBOARDS_DIR)
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.output_dir)
        if stale:
            print(
                f"stale dashboards in {args.output_dir}: {', '.join(stale)}; "
                "run python grafana/generate.py",
                file=sys.stderr,
            )
            return 1
        print(f"dashboards in {args.output_dir} are up to date")
        return 0
    for path in write(args.output_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
