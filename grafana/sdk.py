"""grafana-foundation-sdk glue: turn the records of records.py into SDK builders.

Everything the dashboards share lives here: datasource, variables, annotations, links, and how
each panel kind is styled. `build` is the one loop every dashboard goes through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from membench.exporter import names as n
from membench.grafana.records import (
    COMMON,
    FLOWER_EVENTS_TOTAL,
    SETTINGS,
    Dashboard,
    Panel,
    PanelKind,
    Row,
)
from membench.prometheus.mixin import Settings

# Every panel and variable reads the datasource the `datasource` variable names: no uid is
# written into a dashboard, so it imports into any Grafana (generate.py adds `__inputs`).
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = dashboard_models.DataSourceRef(
    type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}"
)
GRAFANA_DATASOURCE = dashboard_models.DataSourceRef(type_val="grafana", uid="-- Grafana --")
# `membench loadgen --grafana-url` tags its run annotations with this; the dashboards show them.
TAG = "membench"
# The SDK builder of each panel kind; their shared methods return the builder itself.
PanelBuilder = TypeVar("PanelBuilder", timeseries.Panel, stat.Panel, bargauge.Panel, table.Panel)


class Ids:
    """Hands out panel ids in build order so the JSON is stable from run to run."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        self._next += 1
        return self._next


def ref_id(index: int) -> str:
    """A, B, C, ...: the table's "Value #A" column names depend on these."""
    return chr(ord("A") + index)


def query(
    expr: str, legend: str, *, instant: bool, table_format: bool = False
) -> prometheus_builders.Dataquery:
    """One Prometheus target on the membench datasource."""
    target = prometheus_builders.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)
    target = target.instant() if instant else target.range()
    if table_format:
        target = target.format(prometheus_models.PromQueryFormat.TABLE)
    return target


def with_targets(builder: PanelBuilder, panel: Panel, *, instant: bool) -> PanelBuilder:
    """Attach the record's targets with refIds A, B, ... in order."""
    for index, (expr, legend) in enumerate(panel.targets):
        builder = builder.with_target(query(expr, legend, instant=instant).ref_id(ref_id(index)))
    return builder


def base(builder: PanelBuilder, ids: Ids, panel: Panel) -> PanelBuilder:
    """What every panel kind sets: id, title, description, datasource and size."""
    return (
        builder.id(ids())
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .span(panel.span)
        .height(panel.height)
    )


def reduce_last() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def thresholds(panel: Panel) -> dashboard_builders.ThresholdsConfig:
    """The record's steps, absolute: never Grafana's default red at 80."""
    steps = [dashboard_models.Threshold(value=v, color=c) for v, c in panel.thresholds]
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps(steps)
    )


def timeseries_panel(panel: Panel, ids: Ids) -> timeseries.Panel:
    builder = (
        base(timeseries.Panel(), ids, panel)
        .unit(panel.unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(list(panel.legend_calcs))
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if panel.stepped:
        # Last-value gauges change only when a task ends; a ramp between scrapes would lie.
        builder = builder.line_interpolation(common.LineInterpolation.STEP_AFTER)
    builder = with_targets(builder, panel, instant=False)
    for regexp, prop, value in panel.overrides:
        builder = builder.override_by_regexp(
            regexp, [dashboard_models.DynamicConfigValue(id_val=prop, value=value)]
        )
    return builder


def stat_panel(panel: Panel, ids: Ids) -> stat.Panel:
    builder = (
        base(stat.Panel(), ids, panel)
        .unit(panel.unit)
        .reduce_options(reduce_last())
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(common.BigValueColorMode.VALUE)
        .orientation(common.VizOrientation.HORIZONTAL)
        .thresholds(thresholds(panel))
    )
    if panel.decimals is not None:
        builder = builder.decimals(panel.decimals)
    return with_targets(builder, panel, instant=True)


def bargauge_panel(panel: Panel, ids: Ids) -> bargauge.Panel:
    builder = (
        base(bargauge.Panel(), ids, panel)
        .unit(panel.unit)
        .min(0)
        .reduce_options(reduce_last())
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .thresholds(thresholds(panel))
        .color_scheme(
            dashboard_builders.FieldColor().mode(dashboard_models.FieldColorModeId.THRESHOLDS)
        )
    )
    if panel.max is not None:
        builder = builder.max(panel.max)
    return with_targets(builder, panel, instant=True)


def table_panel(panel: Panel, ids: Ids) -> table.Panel:
    """One row per scenario: instant table queries merged on `scenario`, one column each."""
    rename = {"scenario": "Approach"}
    order = {"scenario": 0}
    for index, (_, column) in enumerate(panel.targets):
        # Grafana names the value of target X "Value #X" once the frames are merged.
        value_field = f"Value #{ref_id(index)}"
        rename[value_field] = column
        order[value_field] = index + 1
    builder = base(table.Panel(), ids, panel)
    if panel.decimals is not None:
        builder = builder.decimals(panel.decimals)
    builder = (
        builder.unit(panel.unit)
        .sort_by([common_builders.TableSortByFieldState().display_name(panel.targets[0][1])])
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
    for index, (expr, _) in enumerate(panel.targets):
        target = query(expr, "__auto", instant=True, table_format=True)
        builder = builder.with_target(target.ref_id(ref_id(index)))
    return builder


PANEL_BUILDERS: dict[PanelKind, Callable[[Panel, Ids], Builder[dashboard_models.Panel]]] = {
    "timeseries": timeseries_panel,
    "stat": stat_panel,
    "bargauge": bargauge_panel,
    "table": table_panel,
}


def variable(
    name: str, label: str, description: str, query_text: str, *, multi: bool = True
) -> dashboard_builders.QueryVariable:
    """Multi-select with All sent as `.*` (which also matches a missing label, e.g. namespace
    outside Kubernetes), so scenarios added later show without edits. Single-select (Flower's
    job) picks the first value."""
    builder = (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(query_text)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )
    if not multi:
        return builder
    all_option = dashboard_models.VariableOption(selected=True, text="All", value="$__all")
    return builder.multi(True).include_all(True).all_value(".*").current(all_option)


def datasource_variable() -> dashboard_builders.DatasourceVariable:
    return (
        dashboard_builders.DatasourceVariable(DATASOURCE_VARIABLE)
        .label("Data source")
        .type("prometheus")
    )


def variables(spec: Dashboard, settings: Settings) -> list[Builder[dashboard_models.VariableModel]]:
    """datasource, [cluster], namespace, job, [flower_job], scenario, instance: each chained to
    those before it, all narrowed by the settings' selector."""
    info = n.WORKER_INFO
    found: list[Builder[dashboard_models.VariableModel]] = [datasource_variable()]
    if settings.cluster_label:
        found.append(
            variable(
                "cluster",
                "Cluster",
                f"The `{settings.cluster_label}` label: which cluster's workers.",
                # The selector alone: this variable is what the cluster matcher reads.
                f"label_values({settings.series(info)}, {settings.cluster_label})",
            )
        )
    found += [
        variable(
            "namespace",
            "Namespace",
            "Kubernetes namespace of the workers (All also matches series without one).",
            f"label_values({info}{{{SETTINGS}}}, namespace)",
        ),
        variable(
            "job",
            "Job",
            "Prometheus job of the worker exporters (a PodMonitor's is <namespace>/<name>).",
            f"label_values({info}{{{COMMON}}}, job)",
        ),
    ]
    if spec.flower:
        found.append(
            variable(
                "flower_job",
                "Flower job",
                "Prometheus job of the Flower the Flower panels read (one Flower per broker).",
                f"label_values({FLOWER_EVENTS_TOTAL}{{{COMMON}}}, job)",
                multi=False,
            )
        )
    workers = f'job=~"$job", {COMMON}'
    found += [
        variable(
            "scenario",
            "Scenario",
            "Celery pool + in-task strategy (one worker and queue per scenario).",
            f"label_values({info}{{{workers}}}, scenario)",
        ),
        variable(
            "instance",
            "Worker process",
            "Exporter endpoint (host:port) of one worker process: main or prefork child.",
            f'label_values({info}{{scenario=~"$scenario", {workers}}}, instance)',
        ),
    ]
    return found


def header(spec: Dashboard, settings: Settings) -> dashboard_builders.Dashboard:
    """What every dashboard shares: tag, variables, cross-links, built-in annotations."""
    builtin_annotations = (
        dashboard_builders.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(GRAFANA_DATASOURCE)
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )
    # One annotation per loadgen run, posted by the loadgen with the membench tag.
    loadgen_annotations = (
        dashboard_builders.AnnotationQuery()
        .name("Loadgen runs")
        .datasource(GRAFANA_DATASOURCE)
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
        dashboard_builders.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags([TAG])
        .editable()
        .timezone("browser")
        .time(spec.time_from, "now")
        .refresh(spec.refresh)
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .annotation(builtin_annotations)
        .annotation(loadgen_annotations)
        .variables(variables(spec, settings))
        .link(
            dashboard_builders.DashboardLink("membench dashboards")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(False)  # each dashboard has its own natural range (1 h vs 24 h)
        )
    )


def build(spec: Dashboard, settings: Settings) -> dashboard_builders.Dashboard:
    """The dashboard builder for `spec`: header, then rows and panels in order (the settings'
    matchers are put in by generate.py, over the built JSON)."""
    ids = Ids()
    dash = header(spec, settings)
    for item in spec.items:
        if isinstance(item, Row):
            dash = dash.with_row(dashboard_builders.Row(item.title).id(ids()))
        else:
            dash = dash.with_panel(PANEL_BUILDERS[item.kind](item, ids))
    return dash
