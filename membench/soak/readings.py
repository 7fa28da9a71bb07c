"""Raw samples of a soak window from any Prometheus: every scrape of a series as (unix time,
value), keyed by its label set, and the counters' increases with resets taken as Prometheus does."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from membench.query.client import Prometheus
from membench.query.timerange import Window

Key = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Series:
    """One series: its labels (no __name__) and its samples in time order."""

    labels: dict[str, str]
    points: list[tuple[float, float]]

    @property
    def key(self) -> Key:
        return key_of(self.labels)


def key_of(labels: dict[str, str], without: Iterable[str] = ()) -> Key:
    skip = {"__name__", *without}
    return tuple(sorted((k, v) for k, v in labels.items() if k not in skip))


def raw(client: Prometheus, selector: str, window: Window) -> list[Series]:
    """Every sample of `selector` in the window, as scraped (no step, no interpolation)."""
    result = client.query(f"{selector}[{window.promql_range}] @ {window.at}")
    return [
        Series(
            {k: v for k, v in item["metric"].items() if k != "__name__"},
            [(float(t), float(v)) for t, v in item["values"]],
        )
        for item in result
    ]


def over_time(
    client: Prometheus, expr: str, window: Window, step: float
) -> list[tuple[float, float]]:
    """One value of a single-series expression every `step` seconds (e.g. a count)."""
    result = client.query_range(expr, window.start, window.end, step)
    return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []


def born_in(points: list[tuple[float, float]], window_start: float) -> bool:
    """The series began in the window (a new worker, a task name's first run): its first sample
    comes over two scrape intervals after the window's start, so it counted up from zero."""
    if not points:
        return False
    gaps = sorted(b[0] - a[0] for a, b in itertools.pairwise(points)) or [0.0]
    return points[0][0] > window_start + 2 * gaps[len(gaps) // 2]


def increase(points: list[tuple[float, float]], window_start: float | None = None) -> float:
    """A counter's increase over its samples; a drop is a restart from zero (Prometheus's rule).
    With `window_start`, a series born in the window counts its first value too."""
    born = window_start is not None and born_in(points, window_start)
    total = points[0][1] if born else 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        total += after - before if after >= before else after
    return total
