"""The metrics one worker process exports: its memory collector, task gauges and identity."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

from membench.exporter import names
from membench.exporter.collector import ProcessMemoryCollector

# `_created` series double the series count and no rule or panel reads them.
disable_created_metrics()

TASK_OUTCOMES = ("success", "failure", "lost", "rejected")


class WorkerMetrics:
    """A registry per process; every series carries the identity labels of the process."""

    def __init__(self, identity: Mapping[str, str], info: Mapping[str, str] | None = None) -> None:
        missing = set(names.IDENTITY_LABELS) - set(identity)
        if missing:
            raise ValueError(f"identity lacks labels {sorted(missing)}")
        self.identity = {k: identity[k] for k in names.IDENTITY_LABELS}
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(ProcessMemoryCollector(self.identity))
        labels = list(self.identity)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=self.registry)

        self.tasks_in_progress = gauge(names.TASKS_IN_PROGRESS, "Tasks running now.").labels(
            **self.identity
        )
        self.subtasks_in_progress = gauge(
            names.SUBTASKS_IN_PROGRESS, "Subtasks holding their data now."
        ).labels(**self.identity)
        self.task_peak_rss_bytes = gauge(
            names.TASK_PEAK_RSS_BYTES, "Exact peak RSS of this process during its last task."
        ).labels(**self.identity)
        self.task_last_duration_seconds = gauge(
            names.TASK_LAST_DURATION_SECONDS, "Wall time of the last task in this process."
        ).labels(**self.identity)
        self.task_duration_seconds = Histogram(
            names.TASK_DURATION_SECONDS,
            "Wall time of process_batch tasks.",
            labels,
            buckets=names.TASK_DURATION_BUCKETS,
            registry=self.registry,
        ).labels(**self.identity)
        runs = Counter(
            names.TASK_RUNS_TOTAL,
            "Task runs by outcome.",
            [*labels, names.OUTCOME_LABEL],
            registry=self.registry,
        )
        # Every outcome exists from the start, so rate() and absent() behave from the first scrape.
        self.task_runs = {o: runs.labels(**self.identity, outcome=o) for o in TASK_OUTCOMES}
        self.subtasks_completed = Counter(
            names.SUBTASKS_COMPLETED_TOTAL, "Subtasks finished.", labels, registry=self.registry
        ).labels(**self.identity)
        Info(
            names.WORKER_INFO.removesuffix("_info"),
            "Identity of this worker process.",
            labels,
            registry=self.registry,
        ).labels(**self.identity).info(dict(info or {}))

    @contextmanager
    def subtask_running(self) -> Iterator[None]:
        self.subtasks_in_progress.inc()
        try:
            yield
        finally:
            self.subtasks_in_progress.dec()
