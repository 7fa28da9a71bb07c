"""What a dashboard is made of, as plain frozen records: no SDK here.

`overview.py` and `soak.py` are lists of these (mostly written through the factories of
`kinds.py`); `sdk.py` turns each into an SDK builder. Also holds the PromQL vocabulary both
dashboards share: selectors, legends, units, expression helpers and per-scenario/per-process
targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PanelKind = Literal["timeseries", "stat", "bargauge", "table"]

# Grid units out of Grafana's 24; a record only states a width when it differs.
DEFAULT_WIDTH: dict[PanelKind, int] = {"timeseries": 12, "stat": 8, "bargauge": 10, "table": 14}
DEFAULT_LEGEND_CALCS = ("lastNotNull", "max")

# Selectors: rule series keep only scenario/pool/strategy, so only raw per-process series can
# also be narrowed to an instance.
SCENARIO = 'scenario=~"$scenario"'
PROCESS = 'scenario=~"$scenario", instance=~"$instance"'
MIB = 1048576
SCENARIO_LEGEND = "{{scenario}}"
PROCESS_LEGEND = "{{scenario}} {{role}} ({{instance}})"


def on_scenario(metric: str) -> str:
    """`metric{scenario=~"$scenario"}`: rule outputs and other per-scenario series."""
    return f"{metric}{{{SCENARIO}}}"


def on_process(metric: str) -> str:
    """`metric{scenario=~..., instance=~...}`: raw per-process worker series."""
    return f"{metric}{{{PROCESS}}}"


def scenario_max(rule: str) -> str:
    """Current value of a per-scenario rule, one series per scenario."""
    return f"max by (scenario) ({on_scenario(rule)})"


def range_peak(rule: str) -> str:
    """Highest value of a per-scenario rule over the dashboard's time range."""
    return f"max by (scenario) (max_over_time({on_scenario(rule)}[$__range]))"


def range_increase(selector: str) -> str:
    """Increase of a counter `selector` over the dashboard's time range, per scenario."""
    return f"sum by (scenario) (increase({selector}[$__range]))"


def quantile(q: float, by: str, buckets: str) -> str:
    """Quantile `q` per `by` label from a histogram's `_bucket` series selector."""
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({buckets}[$__rate_interval])))"


Target = tuple[str, str]  # (PromQL, legend)


def per_scenario(expr: str, suffix: str = "") -> Target:
    """A target drawn once per scenario: legend `{{scenario}}`, then `suffix` if any."""
    return (expr, f"{SCENARIO_LEGEND} {suffix}" if suffix else SCENARIO_LEGEND)


def per_process(expr: str, suffix: str = "") -> Target:
    """A target drawn once per worker process (PROCESS_LEGEND), then `suffix` if any."""
    return (expr, f"{PROCESS_LEGEND} {suffix}" if suffix else PROCESS_LEGEND)


@dataclass(frozen=True)
class Row:
    """A row header; the panels after it, up to the next row, sit under it."""

    title: str


@dataclass(frozen=True)
class Panel:
    """One panel. `targets` are (PromQL, legend) pairs and get refIds A, B, ... in order.

    Range queries for timeseries, instant ones for stat, bargauge and table. For a table the
    second item is the column header (its queries keep Grafana's automatic legend) and rows are
    sorted by the first column.
    """

    kind: PanelKind
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str
    width: int | None = None  # None: DEFAULT_WIDTH[kind]
    height: int = 8
    decimals: int | None = None  # stat, table
    stepped: bool = False  # timeseries: step-after lines for last-value gauges
    legend_calcs: tuple[str, ...] = DEFAULT_LEGEND_CALCS  # timeseries
    overrides: tuple[tuple[str, str, str], ...] = ()  # timeseries: (name regexp, property, value)

    def __post_init__(self) -> None:
        # A missing trailing comma turns ((expr, legend)) into (expr, legend): catch it here
        # rather than as a panel with two targets named after single characters.
        if not self.targets or not all(
            isinstance(t, tuple) and len(t) == 2 and all(isinstance(s, str) for s in t)
            for t in self.targets
        ):
            raise ValueError(f"{self.title!r}: targets must be a tuple of (expr, legend) pairs")
        timeseries_only = (
            self.stepped,
            self.overrides,
            self.legend_calcs != DEFAULT_LEGEND_CALCS,
        )
        if self.kind != "timeseries" and any(timeseries_only):
            raise ValueError(f"{self.title!r}: stepped/legend_calcs/overrides are timeseries-only")

    @property
    def span(self) -> int:
        return DEFAULT_WIDTH[self.kind] if self.width is None else self.width


@dataclass(frozen=True)
class Dashboard:
    """One dashboard file: header fields plus its rows and panels in display order."""

    uid: str
    title: str
    description: str
    time_from: str
    refresh: str
    items: tuple[Row | Panel, ...]

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"
