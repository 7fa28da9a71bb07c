"""Growth per worker process: the idle RSS samples of each process slot (a series, or the series
that took its place), cut into segments at process replacements (a new start time) and at
faults, with the warm-up after each start left out; a slope with its interval per slot, and the
level jumps between segments reported as steps."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from membench.exporter import names
from membench.soak.readings import Key, Series, key_of
from membench.soak.trend import MIN_SEGMENT_POINTS, Trend, fit, judge, level_at
from membench.units import MIB

HOUR = 3600.0
# No call on fewer samples: a few scrapes seconds apart show allocator steps as a clean line,
# and the noise they measure says nothing of the minutes between them.
MIN_POINTS = 10


@dataclass(frozen=True)
class Cut:
    """An event that may move a process's level: a fault (scenario None: every worker)."""

    at: float
    cause: str
    scenario: str | None = None


@dataclass
class Step:
    """A level jump between two segments of one slot, MB; None when a side has too few samples."""

    at: float
    cause: str
    mb: float | None


@dataclass
class Growth:
    """A slope in MB/h with its CONFIDENCE interval, and how it was measured."""

    status: str  # pass | fail | inconclusive, against the --max-growth limit
    mb_per_hour: float | None
    stderr_mb_per_hour: float | None
    low_mb_per_hour: float | None
    high_mb_per_hour: float | None
    points: int
    segments: int
    span_s: float
    noise_mb: float | None
    autocorrelation: float
    seconds_to_resolve: float | None  # to resolve the limit at the measured noise

    @classmethod
    def of(cls, trend: Trend, limit: float) -> Growth:
        def per_hour(value: float | None) -> float | None:
            return None if value is None else value * HOUR / MIB

        needed = trend.seconds_to_resolve(limit)
        called = trend.points >= MIN_POINTS
        if not called and trend.interval_s is not None:
            needed = max(needed or 0.0, MIN_POINTS * trend.interval_s)
        return cls(
            status=judge(trend.low, trend.high, limit) if called else "inconclusive",
            mb_per_hour=per_hour(trend.slope),
            stderr_mb_per_hour=per_hour(trend.stderr),
            low_mb_per_hour=per_hour(trend.low),
            high_mb_per_hour=per_hour(trend.high),
            points=trend.points,
            segments=trend.segments,
            span_s=trend.span_s,
            noise_mb=None if trend.noise is None else trend.noise / MIB,
            autocorrelation=trend.autocorrelation,
            seconds_to_resolve=needed,
        )


@dataclass
class ProcessGrowth:
    """One worker process slot: its idle-RSS growth, replacements and steps."""

    name: str
    labels: dict[str, str]
    growth: Growth
    replaced_at: list[float]  # unix times a new process took the slot (target churn)
    steps: list[Step] = field(default_factory=list)
    # The idle samples used, (unix time, bytes), one list per segment: the plot draws them.
    segments: list[list[tuple[float, float]]] = field(default_factory=list)


def _by_key(series: Sequence[Series]) -> dict[Key, list[tuple[float, float]]]:
    return {s.key: s.points for s in series}


def _name(labels: dict[str, str], with_instance: bool) -> str:
    shown = [k for k in ("scenario", "pool", "role", "child") if labels.get(k)]
    shown += [k for k in sorted(labels) if k not in {*shown, "strategy", "job", "instance"}]
    shown += ["instance"] if with_instance or "scenario" not in labels else []
    return " ".join(f"{k}={labels[k]}" for k in shown if labels.get(k) not in (None, ""))


def _slots(rss: Sequence[Series]) -> list[tuple[dict[str, str], list[Series], bool]]:
    """Series grouped into slots: those with the same labels but `instance` are one slot when they
    follow each other in time (a restarted worker on a new port), else one slot per series."""
    groups: dict[Key, list[Series]] = {}
    for s in rss:
        if s.points:
            groups.setdefault(key_of(s.labels, ["instance"]), []).append(s)
    slots = []
    for members in groups.values():
        members.sort(key=lambda s: s.points[0][0])
        overlap = any(a.points[-1][0] > b.points[0][0] for a, b in itertools.pairwise(members))
        if overlap:
            slots += [(s.labels, [s], True) for s in members]
        else:
            slots.append((members[-1].labels, members, False))
    return slots


def _lives(
    members: list[Series],
    busy: dict[Key, list[tuple[float, float]]],
    starts: dict[Key, list[tuple[float, float]]],
    warmup_s: float,
) -> tuple[list[list[tuple[float, float, float | None]]], list[float]]:
    """The idle samples of each process of a slot, in order: (time, bytes, start time), and the
    time of each replacement (the first sample of the new process)."""
    lives: list[list[tuple[float, float, float | None]]] = []
    replaced: list[float] = []
    for n, series in enumerate(members):
        if n:
            replaced.append(series.points[0][0])
        in_progress = dict(busy.get(series.key, []))
        start_at = dict(starts.get(series.key, []))
        current: float | None = None
        life: list[tuple[float, float, float | None]] = []
        lives.append(life)
        for t, value in series.points:
            started = start_at.get(t, current)
            if started is not None and current is not None and started != current:
                life = []
                lives.append(life)
                replaced.append(t)
            current = started
            if in_progress.get(t, 0.0) > 0:
                continue  # a task runs: not the idle level
            if started is not None and t - started < warmup_s:
                continue
            life.append((t, value, started))
    return lives, replaced


def process_growth(
    rss: Sequence[Series],
    busy: Sequence[Series],
    starts: Sequence[Series],
    limit_bytes_per_s: float,
    warmup_s: float,
    cuts: Sequence[Cut] = (),
) -> list[ProcessGrowth]:
    """Per slot: the pooled slope of its idle samples over its segments, and each step."""
    busy_by, starts_by = _by_key(busy), _by_key(starts)
    found = []
    for labels, members, per_instance in _slots(rss):
        lives, replaced = _lives(members, busy_by, starts_by, warmup_s)
        mine = sorted(c.at for c in cuts if c.scenario in (None, labels.get("scenario")))
        causes = {c.at: c.cause for c in cuts}
        # Each piece: the event that opened it (time, cause; None for the first) and its samples.
        pieces: list[tuple[tuple[float, str] | None, list[tuple[float, float]]]] = []
        for n, life in enumerate(lives):
            points = [(t, v) for t, v, _ in life]
            opened = (points[0][0], "process replaced") if n and points else None
            for at in mine:
                before = [p for p in points if p[0] < at]
                after = [p for p in points if p[0] >= at]
                if before and after:
                    pieces.append((opened, before))
                    opened, points = (at, causes[at]), after
            pieces.append((opened, points))
        pieces = [(o, p) for o, p in pieces if p]
        segments = [p for _, p in pieces]
        trend = fit(segments)
        steps = []
        for (_, before), (opened, after) in itertools.pairwise(pieces):
            at, cause = opened or (after[0][0], "process replaced")
            ok = min(len(before), len(after)) >= MIN_SEGMENT_POINTS
            jump = None
            if ok and trend.slope is not None:
                jump = (level_at(after, trend.slope, at) - level_at(before, trend.slope, at)) / MIB
            steps.append(Step(at, cause, jump))
        found.append(
            ProcessGrowth(
                name=_name(labels, per_instance),
                labels=labels,
                growth=Growth.of(trend, limit_bytes_per_s),
                replaced_at=replaced,
                steps=steps,
                segments=segments,
            )
        )
    return sorted(found, key=lambda p: p.name)


def replacement_times(processes: Sequence[ProcessGrowth]) -> list[float]:
    """When any process was replaced: the per-task sums of its worker restart there."""
    return sorted(t for p in processes for t in p.replaced_at)


SELECTORS = {
    "rss": names.PROCESS_RSS_BYTES,
    "busy": names.PROCESS_TASKS_IN_PROGRESS,
    "starts": names.PROCESS_START_TIME_SECONDS,
}
