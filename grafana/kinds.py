"""Panel factories: one per recurring panel kind, so each panel of a dashboard is one call.

Each returns a plain `records.Panel`; the optional fields (width, height, decimals, stepped,
legend_calcs, overrides) pass through unchanged. No SDK here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypedDict, Unpack

from membench.grafana.records import (
    Panel,
    Step,
    Target,
    on_process,
    on_scenario,
    per_process,
    per_scenario,
)

# Hourly rates are read as averages and trends, not peaks.
PER_HOUR_LEGEND_CALCS = ("mean", "lastNotNull")


class PanelOptions(TypedDict, total=False):
    """The optional `Panel` fields a factory passes through unchanged."""

    width: int | None
    height: int
    decimals: int | None
    stepped: bool
    legend_calcs: tuple[str, ...]
    overrides: tuple[tuple[str, str, str], ...]
    thresholds: tuple[Step, ...]
    max: float | None


def timeseries(
    title: str, description: str, unit: str, *targets: Target, **options: Unpack[PanelOptions]
) -> Panel:
    """A timeseries panel of `targets`, (PromQL, legend) pairs, as range queries."""
    return Panel("timeseries", title, description, targets, unit=unit, **options)


def stat(
    title: str, description: str, unit: str, *targets: Target, **options: Unpack[PanelOptions]
) -> Panel:
    """A stat panel of `targets`, (PromQL, legend) pairs, as instant queries."""
    return Panel("stat", title, description, targets, unit=unit, **options)


def scenario_series(
    title: str,
    description: str,
    unit: str,
    rules: str | Mapping[str, str],
    select: Callable[[str], str] = on_scenario,
    **options: Unpack[PanelOptions],
) -> Panel:
    """A timeseries of per-scenario rules: one line per scenario and rule.

    `rules` is one rule (legend `{{scenario}}`) or a mapping of legend suffix to rule, in
    target order; `select` narrows each (records.on_loadgen for the loadgen's rules).
    """
    suffixed = {"": rules} if isinstance(rules, str) else rules
    targets = (per_scenario(select(rule), suffix) for suffix, rule in suffixed.items())
    return timeseries(title, description, unit, *targets, **options)


def process_series(
    title: str, description: str, unit: str, metric: str, **options: Unpack[PanelOptions]
) -> Panel:
    """A timeseries of one raw per-process metric: one line per worker process."""
    return timeseries(title, description, unit, per_process(on_process(metric)), **options)


def per_hour(
    title: str, description: str, rule: str, select: Callable[[str], str] = on_scenario
) -> Panel:
    """Runs per hour by scenario and outcome, from a 5-minute per-outcome rate rule."""
    target = per_scenario(f"{select(rule)} * 3600", "{{outcome}}")
    return timeseries(title, description, "suffix: /h", target, legend_calcs=PER_HOUR_LEGEND_CALCS)
