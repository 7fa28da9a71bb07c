"""What a dashboard is made of, as plain frozen records: no SDK here.

`overview.py` and `soak.py` are lists of these; `sdk.py` turns each into an SDK builder. Also
holds the PromQL vocabulary both dashboards share (selectors, legends, units).
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
PROCESS_LEGEND = "{{scenario}} {{role}} ({{instance}})"


def on_scenario(metric: str) -> str:
    """`metric{scenario=~"$scenario"}`: rule outputs and other per-scenario series."""
    return f"{metric}{{{SCENARIO}}}"


def on_process(metric: str) -> str:
    """`metric{scenario=~..., instance=~...}`: raw per-process worker series."""
    return f"{metric}{{{PROCESS}}}"


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
    targets: tuple[tuple[str, str], ...]
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
