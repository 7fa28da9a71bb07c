"""Query results -> one row per approach: the runs told apart from the gauges' raw samples,
outcomes from the counter's, peaks and quantiles from instant vectors. Pure: no HTTP here."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from membench.exporter import names
from membench.query.promql import QUANTILES, quantile_key
from membench.stats import describe
from membench.workers.scenarios import SCENARIOS

if TYPE_CHECKING:
    from membench.query.client import Series


@dataclass(frozen=True, slots=True)
class Run:
    """One task run as its process's gauges showed it."""

    seen_at: float  # the first scrape that showed it (the run ended at or before)
    duration_s: float
    task_peak_rss_bytes: float | None
    instance: str
    role: str


@dataclass
class Approach:
    """What Prometheus recorded of one scenario in the window."""

    scenario: str
    runs: list[Run] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    peak_rss_bytes: float | None = None
    peak_pss_bytes: float | None = None
    quantiles_s: dict[str, float | None] = field(default_factory=dict)
    timeline: dict[str, list[list[float]]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The seed's wording, as `membench run` prints it (the bare name if unknown here)."""
        known = SCENARIOS.get(self.scenario)
        return known.label if known else self.scenario

    @property
    def execution_time_s(self) -> float | None:
        """Median wall time of the runs, as `membench run`'s Execution Time."""
        return describe([r.duration_s for r in self.runs])["median"] if self.runs else None

    @property
    def task_peaks(self) -> dict[str, float] | None:
        peaks = [r.task_peak_rss_bytes for r in self.runs if r.task_peak_rss_bytes is not None]
        return describe(peaks) if peaks else None

    @property
    def total_runs(self) -> int:
        return sum(self.outcomes.values())


def _number(text: str) -> float | None:
    value = float(text)
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _key(series: Series) -> tuple[tuple[str, str], ...]:
    """A series' identity across metrics: its labels without the metric name."""
    return tuple(sorted((k, v) for k, v in series["metric"].items() if k != "__name__"))


def _stretches(values: list[tuple[float, str]]) -> list[tuple[float, float, float]]:
    """(first time, last time, value) of each run of equal consecutive samples."""
    out: list[tuple[float, float, float]] = []
    for t, text in values:
        value = float(text)
        if out and out[-1][2] == value:
            out[-1] = (out[-1][0], float(t), value)
        else:
            out.append((float(t), float(t), value))
    return out


def runs_from_gauges(
    durations: list[Series], peaks: list[Series], start: float
) -> dict[str, list[Run]]:
    """Runs that began showing in [start, end], per scenario.

    A run is a stretch of equal non-zero samples of one series' last-duration gauge (0 is a
    process that ran nothing yet); its peak is the peak gauge of the same series at the
    stretch's last scrape, by which time the task had set both.
    """
    peak_at = {_key(s): {float(t): v for t, v in s["values"]} for s in peaks}
    found: dict[str, list[Run]] = defaultdict(list)
    for series in durations:
        labels, key = series["metric"], _key(series)
        for first, last, value in _stretches(series["values"]):
            if value == 0 or first < start:
                continue
            peak = peak_at.get(key, {}).get(last)
            found[labels.get("scenario", "")].append(
                Run(
                    seen_at=first,
                    duration_s=value,
                    task_peak_rss_bytes=None if peak is None else _number(peak),
                    instance=labels.get("instance", ""),
                    role=labels.get("role", ""),
                )
            )
    return {name: sorted(runs, key=lambda r: r.seen_at) for name, runs in found.items()}


def outcome_counts(counters: list[Series], start: float) -> dict[str, dict[str, int]]:
    """Runs per scenario and outcome in [start, end], from raw samples of the runs counter.

    Exact where `increase()` extrapolates: the sum of the counter's steps within the window (a
    drop is a restarted process, counting from 0); a series whose first sample is in the
    window has no sample in the lookback before it, so it is a new process counting from 0.
    """
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for series in counters:
        labels = series["metric"]
        total, previous = 0.0, None
        for t, text in series["values"]:
            value = float(text)
            if float(t) >= start:
                step = value if previous is None or value < previous else value - previous
                total += step
            previous = value
        counts[labels.get("scenario", "")][labels.get(names.OUTCOME_LABEL, "")] += round(total)
    return {name: {o: n for o, n in by.items() if n} for name, by in counts.items()}


def by_scenario(vector: list[Series]) -> dict[str, float | None]:
    """An instant vector by scenario (the highest where several series share one)."""
    out: dict[str, float | None] = {}
    for series in vector:
        name, value = series["metric"].get("scenario", ""), _number(series["value"][1])
        old = out.get(name)
        out[name] = value if old is None or (value is not None and value > old) else old
    return out


def points_by_scenario(matrix: list[Series]) -> dict[str, list[list[float]]]:
    """A range query's points by scenario, as [unix time, value] pairs."""
    out: dict[str, list[list[float]]] = {}
    for series in matrix:
        points = [[float(t), float(v)] for t, v in series["values"]]
        out.setdefault(series["metric"].get("scenario", ""), []).extend(points)
    return out


def approaches(results: dict[str, list[Series]], start: float) -> list[Approach]:
    """One Approach per scenario with a run in the window, sorted by peak memory as the seed's
    table is; `results` holds each query of promql.instant_queries by its key."""
    runs = runs_from_gauges(results["durations"], results["task_peaks"], start)
    outcomes = outcome_counts(results["runs"], start)
    peaks_rss, peaks_pss = by_scenario(results["peak_rss"]), by_scenario(results["peak_pss"])
    quantiles = {key: by_scenario(results[key]) for key in map(quantile_key, QUANTILES)}
    found = []
    for name in sorted(set(runs) | {n for n, by in outcomes.items() if by}):
        found.append(
            Approach(
                scenario=name,
                runs=runs.get(name, []),
                outcomes=outcomes.get(name, {}),
                peak_rss_bytes=peaks_rss.get(name),
                peak_pss_bytes=peaks_pss.get(name),
                quantiles_s={q: by.get(name) for q, by in quantiles.items()},
            )
        )
    found.sort(key=lambda a: (a.peak_rss_bytes is None, a.peak_rss_bytes or 0))
    return found
