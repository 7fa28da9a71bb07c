"""The per-task-name metrics of one worker, rendered from its shared TaskTable at scrape time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from membench.exporter import names
from membench.exporter.tasktable import TaskTable

_GAUGES = (
    (names.TASKS_IN_PROGRESS, "Runs of the task in progress in this worker now.", "in_progress"),
    (
        names.TASK_LAST_DURATION_SECONDS,
        "Wall time of the task's last run in this worker.",
        "last_duration",
    ),
    (
        names.TASK_PEAK_RSS_BYTES,
        "Exact peak RSS of the process during the task's last run that had the process to itself "
        "(VmHWM reset when it started).",
        "peak_rss",
    ),
    (
        names.TASK_WINDOW_PEAK_RSS_BYTES,
        "Peak RSS of the process over the task's last run that shared its process with other "
        "tasks (gevent, threads): an upper bound, not the task's own peak.",
        "window_peak_rss",
    ),
    (
        names.TASK_RETAINED_BYTES,
        "RSS after minus before the task, summed over its exact runs in the live processes: "
        "grows run after run when the task leaks.",
        "retained",
    ),
)


class TaskStatsCollector(Collector):
    """A worker's per-task metrics: one series set per task name that has run, whatever the
    number of processes it ran in."""

    def __init__(self, table: TaskTable, labels: Mapping[str, str]) -> None:
        self._table = table
        self._names = [*labels, names.TASK_LABEL]
        self._values = list(labels.values())
        self._worker_names = [*labels, names.REASON_LABEL]

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            names.TASK_RUNS_TOTAL.removesuffix("_total"),
            "Task runs by outcome, summed over the worker's processes.",
            labels=[*self._names, names.OUTCOME_LABEL],
        )
        duration = HistogramMetricFamily(
            names.TASK_DURATION_SECONDS, "Wall time of task runs.", labels=self._names
        )
        gauges = {
            field: GaugeMetricFamily(name, doc, labels=self._names) for name, doc, field in _GAUGES
        }
        bounds = [floatToGoString(b) for b in self._table.buckets] + ["+Inf"]
        for stats in self._table.stats():
            values = [*self._values, stats.task]
            for outcome, count in stats.runs.items():
                runs.add_metric([*values, outcome], count)
            duration.add_metric(
                values, list(zip(bounds, stats.bucket_counts, strict=True)), stats.duration_sum
            )
            for field, family in gauges.items():
                value = getattr(stats, field)
                if value is not None:
                    family.add_metric(values, value)
        yield runs
        yield duration
        yield from gauges.values()
        recycles = CounterMetricFamily(
            names.CHILD_RECYCLES_TOTAL.removesuffix("_total"),
            "Prefork children replaced, by why: --max-tasks-per-child, --max-memory-per-child, "
            "or died (killed, crashed, OOM-killed).",
            labels=self._worker_names,
        )
        for reason, count in self._table.recycles().items():
            recycles.add_metric([*self._values, reason], count)
        yield recycles

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(names.TASK_RUNS_TOTAL.removesuffix("_total"), "")
        yield HistogramMetricFamily(names.TASK_DURATION_SECONDS, "")
        for name, _, _ in _GAUGES:
            yield GaugeMetricFamily(name, "")
        yield CounterMetricFamily(names.CHILD_RECYCLES_TOTAL.removesuffix("_total"), "")
