"""The benchmark's workers on the instrument every Celery app gets (membench.celery): its
scenario's identity as extra labels, its subtask gauges, and what only the benchmark's runner
needs (a ready file, children that die with their worker, a short GIL switch interval).

Configured by the environment `membench worker` sets: MEMBENCH_SCENARIO, MEMBENCH_METRICS_HOST,
MEMBENCH_METRICS_PORT (main on P, prefork child i on P+1+i; 0 = any free port),
MEMBENCH_TARGETS_DIR (file_sd targets), MEMBENCH_ADVERTISE_HOST; MEMBENCH_READY_FILE (the main
process writes its pid there once Celery says the worker is ready: the runner polls for it).

MEMBENCH_EXPORTER=off instruments nothing: the "without" side of
benchmarks/exporter.py overhead (an idle worker then never imports prometheus_client).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celery import signals

from membench import settings
from membench.exporter import names
from membench.processes import die_with_parent
from membench.workers.scenarios import SCENARIOS

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge

# Each syscall of a scrape releases the GIL; a CPU-bound subtask then keeps it for the whole
# switch interval (5 ms) before the exporter thread gets it back: ~10 syscalls make a scrape take
# ~100 ms. Where subtasks do not run on OS threads (gevent, sequential), the exporter is the only
# other thread wanting the GIL, so a short interval costs the workload nothing between scrapes.
# Where subtasks are OS threads (prefork + threads) the default stays: there the interval decides
# how the measured threads contend.
SCRAPE_SWITCH_INTERVAL_S = 0.0005


def scenario_labels() -> dict[str, str]:
    """The labels the benchmark adds to the instrument's: scenario and in-task strategy."""
    name = settings.scenario()
    scenario = SCENARIOS.get(name)
    return {"scenario": name, "strategy": scenario.strategy if scenario else "unknown"}


class BatchMetrics:
    """process_batch's subtasks in this process, in the registry its exporter serves."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

        # `_created` series double the counters' series and no rule or panel reads them.
        disable_created_metrics()

        from membench.exporter.instrument import process_labels, process_registry

        registry = process_registry() or CollectorRegistry()
        labels = process_labels() or scenario_labels()
        self.subtasks_in_progress: Gauge = Gauge(
            names.SUBTASKS_IN_PROGRESS,
            "Subtasks holding their data now.",
            list(labels),
            registry=registry,
        ).labels(**labels)
        self.subtasks_completed: Counter = Counter(
            names.SUBTASKS_COMPLETED_TOTAL, "Subtasks finished.", list(labels), registry=registry
        ).labels(**labels)

    @contextmanager
    def subtask_running(self) -> Iterator[None]:
        self.subtasks_in_progress.inc()
        try:
            yield
        finally:
            self.subtasks_in_progress.dec()


_metrics: dict[int, BatchMetrics] = {}


def current_metrics() -> BatchMetrics:
    """This process's subtask metrics, made on first use (after the fork, in a prefork child)."""
    pid = os.getpid()
    if pid not in _metrics:
        _metrics.clear()  # a forked child's copy of its parent's belongs to the parent
        _metrics[pid] = BatchMetrics()
    return _metrics[pid]


def _subtasks_on_os_threads() -> bool:
    scenario = SCENARIOS.get(settings.scenario())
    return scenario is not None and scenario.strategy == "threads" and scenario.pool != "gevent"


def _on_worker_init(**_: Any) -> None:
    if settings.exporter_enabled():
        current_metrics()  # its series exist from the start, not from the first subtask
        if not _subtasks_on_os_threads():
            sys.setswitchinterval(SCRAPE_SWITCH_INTERVAL_S)


def _on_worker_ready(**_: Any) -> None:
    settings.announce_ready()


def _on_child_init(**_: Any) -> None:
    # A child must not outlive its worker either: when a killed worker's children are orphaned
    # they would hold their task's memory (and its broker connection) until it ends.
    die_with_parent()
    if settings.exporter_enabled():
        current_metrics()


def _on_worker_shutdown(**_: Any) -> None:
    targets = settings.targets_dir()
    if targets is not None and (targets / "workers").is_dir():
        from membench.targets import prune_dead_targets

        prune_dead_targets(targets / "workers")


def connect_signals() -> None:
    """Connect the benchmark's hooks, after the instrument's: they use the registry it makes."""
    for signal, hook in (
        (signals.worker_init, _on_worker_init),
        (signals.worker_ready, _on_worker_ready),
        (signals.worker_process_init, _on_child_init),
        (signals.worker_shutdown, _on_worker_shutdown),
    ):
        signal.connect(hook, weak=False, dispatch_uid=f"membench.benchmark.{hook.__name__}")
