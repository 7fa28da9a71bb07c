"""Per task name, from the instrument's per-task metrics: the memory each task keeps (the slope of
membench_task_retained_bytes, RSS after minus before its exact runs), per hour and per run, and
its runs by outcome, `lost` included (its process died under it)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from membench.exporter import names
from membench.soak.growth import HOUR, Growth
from membench.soak.readings import Series, born_in, increase
from membench.soak.trend import fit, judge
from membench.units import KIB, MIB


@dataclass
class TaskGrowth:
    """One task name over every worker that ran it."""

    task: str
    retained: Growth | None  # None: no exact run, so no retained-memory series
    retained_per_run_kib: float | None
    runs: dict[str, int] = field(default_factory=dict)  # by outcome, in the window

    @property
    def lost(self) -> int:
        return self.runs.get("lost", 0)


def _segments(
    points: list[tuple[float, float]], cuts: Sequence[float]
) -> list[list[tuple[float, float]]]:
    """The series cut where a process was replaced: the worker's sum then loses that process's
    share (the instrument zeroes a taken-over row), a drop that is no task's doing."""
    bounds = [-math.inf, *sorted(cuts), math.inf]
    return [[p for p in points if a <= p[0] < b] for a, b in itertools.pairwise(bounds)]


def task_growth(
    retained: Sequence[Series],
    runs: Sequence[Series],
    replaced_at: Sequence[float],
    limit_bytes_per_s: float,
    window_start: float,
) -> list[TaskGrowth]:
    """Per task: slopes of each worker's retained sum within segments, summed over workers (their
    errors added in quadrature); retained per run = the segments' rises over the runs they hold."""
    tasks = sorted({s.labels.get(names.TASK_LABEL, "") for s in [*retained, *runs]} - {""})
    found = []
    for task in tasks:
        mine = [s for s in retained if s.labels.get(names.TASK_LABEL) == task]
        fits = [fit(_segments(s.points, replaced_at)) for s in mine]
        fits = [f for f in fits if f.slope is not None]
        growth = None
        if fits:
            slope = sum(f.slope or 0.0 for f in fits)
            complete = all(f.half_width is not None for f in fits)
            half = math.sqrt(sum((f.half_width or 0.0) ** 2 for f in fits)) if complete else None
            stderr = math.sqrt(sum((f.stderr or 0.0) ** 2 for f in fits)) if complete else None
            per_hour = HOUR / MIB
            growth = Growth(
                status=judge(
                    None if half is None else slope - half,
                    None if half is None else slope + half,
                    limit_bytes_per_s,
                ),
                mb_per_hour=slope * per_hour,
                stderr_mb_per_hour=None if stderr is None else stderr * per_hour,
                low_mb_per_hour=None if half is None else (slope - half) * per_hour,
                high_mb_per_hour=None if half is None else (slope + half) * per_hour,
                points=sum(f.points for f in fits),
                segments=sum(f.segments for f in fits),
                span_s=max(f.span_s for f in fits),
                noise_mb=None,
                autocorrelation=max(f.autocorrelation for f in fits),
                seconds_to_resolve=None,
            )
        by_outcome: dict[str, int] = {}
        for s in runs:
            if s.labels.get(names.TASK_LABEL) == task:
                outcome = s.labels.get(names.OUTCOME_LABEL, "")
                by_outcome[outcome] = by_outcome.get(outcome, 0) + round(
                    increase(s.points, window_start)
                )
        # What the runs kept: each segment's rise, and a worker's first value if its series was
        # born in the window (as its runs are counted from zero then).
        rise = sum(
            seg[-1][1] - seg[0][1]
            for s in mine
            for seg in _segments(s.points, replaced_at)
            if len(seg) > 1
        ) + sum(s.points[0][1] for s in mine if born_in(s.points, window_start))
        total_runs = sum(by_outcome.values())
        per_run = rise / KIB / total_runs if mine and total_runs else None
        found.append(TaskGrowth(task, growth, per_run, dict(sorted(by_outcome.items()))))
    return found
