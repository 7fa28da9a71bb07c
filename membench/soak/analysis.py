"""The soak's figures from any Prometheus that scrapes the instrument, over one window: growth per
worker process and per task name, runs by outcome, target churn, child recycles, OOM kills and
the series count. `membench soak --prometheus URL --last 6h` is this alone; the local soak reads
its own stack's Prometheus the same way, so both reach their verdict from the same figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from membench.exporter import names
from membench.query.client import Prometheus
from membench.query.timerange import Window
from membench.soak.growth import Cut, ProcessGrowth, process_growth, replacement_times
from membench.soak.readings import Series, increase, over_time, raw
from membench.soak.tasks import TaskGrowth, task_growth

SERIES_COUNT = 'count({__name__=~"membench_.*"})'
# At most this many points of the series count over a window (a 6 h window: one every 108 s).
SERIES_POINTS = 200


@dataclass
class SeriesCount:
    """`count({__name__=~"membench_.*"})` over the window: flat unless a label grows."""

    start: float | None
    end: float | None
    low: float | None
    high: float | None
    timeline: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Analysis:
    prometheus: str  # the URL, any password masked
    start: float
    end: float
    warmup_s: float
    matchers: str  # the label matchers every selector carried ("" for none)
    processes: list[ProcessGrowth]
    tasks: list[TaskGrowth]
    recycles: dict[str, int]  # prefork children replaced, by reason
    oom_kills: int
    series: SeriesCount

    @property
    def replacements(self) -> int:
        """Target churn: processes that took another's place in the window."""
        return sum(len(p.replaced_at) for p in self.processes)

    @property
    def lost_runs(self) -> int:
        return sum(t.lost for t in self.tasks)


def _oom_kills(series: Sequence[tuple[dict[str, str], float]]) -> int:
    """Every process of a cgroup exports its cgroup's count: the largest increase per host (an
    address's host part), summed over hosts, counts each cgroup once where a host has one."""
    by_host: dict[str, float] = {}
    for labels, rise in series:
        host = labels.get("instance", "").rpartition(":")[0]
        by_host[host] = max(by_host.get(host, 0.0), rise)
    return round(sum(by_host.values()))


def analyse(
    client: Prometheus,
    window: Window,
    limit_bytes_per_s: float,
    warmup_s: float,
    cuts: Sequence[Cut] = (),
    matchers: str = "",
) -> Analysis:
    """Every figure of the window; `matchers` (e.g. `job="membench-workers"`) narrows each
    selector; `cuts` are faults that may move a level (reported as steps, never as slopes)."""

    def selector(name: str) -> str:
        return f"{name}{{{matchers}}}" if matchers else name

    def read(name: str) -> list[Series]:
        return raw(client, selector(name), window)

    processes = process_growth(
        read(names.PROCESS_RSS_BYTES),
        read(names.PROCESS_TASKS_IN_PROGRESS),
        read(names.PROCESS_START_TIME_SECONDS),
        limit_bytes_per_s,
        warmup_s,
        cuts,
    )
    tasks = task_growth(
        read(names.TASK_RETAINED_BYTES),
        read(names.TASK_RUNS_TOTAL),
        replacement_times(processes),
        limit_bytes_per_s,
        window.start,
    )
    recycles: dict[str, int] = {}
    for s in read(names.CHILD_RECYCLES_TOTAL):
        reason = s.labels.get(names.REASON_LABEL, "")
        recycles[reason] = recycles.get(reason, 0) + round(increase(s.points, window.start))
    ooms = _oom_kills(
        [(s.labels, increase(s.points, window.start)) for s in read(names.CGROUP_OOM_KILLS_TOTAL)]
    )
    step = max(1.0, window.seconds / SERIES_POINTS)
    timeline = over_time(client, SERIES_COUNT, window, step)
    values = [v for _, v in timeline]
    series = SeriesCount(
        values[0] if values else None,
        values[-1] if values else None,
        min(values) if values else None,
        max(values) if values else None,
        timeline,
    )
    return Analysis(
        client.shown,
        window.start,
        window.end,
        warmup_s,
        matchers,
        processes,
        tasks,
        {k: v for k, v in sorted(recycles.items()) if v},
        ooms,
        series,
    )
