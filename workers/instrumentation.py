"""Give every worker process its exporter: the main process at worker_init, each prefork child
after fork; count task outcomes from Celery's signals.

Configured by the environment `membench worker` sets: MEMBENCH_SCENARIO, MEMBENCH_METRICS_HOST,
MEMBENCH_METRICS_PORT (main on P, prefork child i on P+1+i; 0 = any free port),
MEMBENCH_TARGETS_DIR (file_sd targets), MEMBENCH_ADVERTISE_HOST; MEMBENCH_READY_FILE (the main
process writes its pid there once Celery says the worker is ready: the runner polls for it).

MEMBENCH_EXPORTER=off starts no exporter and creates no metrics until a task needs them: the
"without" side of benchmarks/exporter_overhead.py (an idle worker then never imports
prometheus_client). Not for normal use: the runner waits for every exporter to register.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import celery
from billiard.exceptions import WorkerLostError
from celery import signals

from membench import settings
from membench.exporter import names
from membench.processes import die_with_parent
from membench.procfs import reset_peak_rss
from membench.workers.params import InvalidParameter
from membench.workers.scenarios import SCENARIOS

if TYPE_CHECKING:
    from membench.exporter.metrics import WorkerMetrics
    from membench.exporter.server import Exporter

log = logging.getLogger("membench.worker")

PROCESS_BATCH = "membench.process_batch"


class _ProcessState:
    main_pid: int | None = None
    metrics: WorkerMetrics | None = None
    exporter: Exporter | None = None
    concurrency: int = 1


_state = _ProcessState()


def identity(role: str) -> dict[str, str]:
    name = settings.scenario()
    scenario = SCENARIOS.get(name)
    return {
        "scenario": name,
        "pool": scenario.pool if scenario else "unknown",
        "strategy": scenario.strategy if scenario else "unknown",
        "role": role,
    }


def current_metrics() -> WorkerMetrics:
    """This process's metrics; created on first use where no worker signal ran (tests, solo)."""
    if _state.metrics is None:
        from membench.exporter.metrics import WorkerMetrics

        _state.metrics = WorkerMetrics(identity(names.ROLE_MAIN))
    return _state.metrics


# Each syscall of a scrape releases the GIL; a CPU-bound subtask then keeps it for the whole
# switch interval (5 ms) before the exporter thread gets it back: ~15 syscalls made scrapes take
# ~100 ms (procfs now reads a file in 3 syscalls, not 10: a scrape makes ~10 in all). Where
# subtasks do not run on OS threads (gevent, sequential), the exporter is the only
# other thread wanting the GIL, so a short interval costs the workload nothing between scrapes.
# Where subtasks are OS threads (prefork + threads) the default stays: there the interval decides
# how the measured threads contend.
SCRAPE_SWITCH_INTERVAL_S = 0.0005


def _start(role: str, port: int) -> None:
    if not settings.exporter_enabled():
        return
    # Imported here, not at module level, so MEMBENCH_EXPORTER=off measures a worker without them.
    from membench.exporter.metrics import WorkerMetrics
    from membench.exporter.server import start_exporter

    ident = identity(role)
    subtasks_on_os_threads = ident["strategy"] == "threads" and ident["pool"] != "gevent"
    if not subtasks_on_os_threads:
        sys.setswitchinterval(SCRAPE_SWITCH_INTERVAL_S)
    _state.metrics = WorkerMetrics(
        ident, {"concurrency": str(_state.concurrency), "celery_version": celery.__version__}
    )
    _state.exporter = start_exporter(
        _state.metrics.registry,
        settings.metrics_host(),
        port,
        targets_dir=settings.targets_dir(),
        target_labels=ident,
        advertise_host=settings.advertise_host(),
    )
    log.info(
        "membench exporter (%s, pid %d) on %s:%d",
        role,
        os.getpid(),
        _state.exporter.host,
        _state.exporter.port,
    )


def _base_port() -> int:
    return settings.metrics_port()


@signals.worker_init.connect
def _on_worker_init(sender: Any, **_: Any) -> None:
    _state.main_pid = os.getpid()
    _state.concurrency = int(getattr(sender, "concurrency", 1) or 1)
    _start(names.ROLE_MAIN, _base_port())


@signals.worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    path = settings.ready_file()
    if path is not None:
        tmp = path.with_name(f"{path.name}.tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(path)


@signals.worker_process_init.connect
def _on_child_init(**_: Any) -> None:
    if os.getpid() == _state.main_pid:
        return  # the solo pool sends this signal in the main process
    import billiard.process

    # A child must not outlive its worker either: when a killed worker's children are orphaned
    # they would hold their task's memory (and its broker connection) until it ends.
    die_with_parent()
    # The inherited listening socket belongs to the parent's exporter: close our copy only.
    if _state.exporter is not None:
        _state.exporter.close()
    # A forked child's VmHWM starts at the parent's RSS; reset it so its peaks are its own.
    reset_peak_rss()
    index = billiard.process.current_process().index
    base = _base_port()
    _start(names.ROLE_CHILD, base + 1 + index if base else 0)


@signals.worker_process_shutdown.connect
def _on_child_shutdown(**_: Any) -> None:
    if _state.exporter is not None and os.getpid() != _state.main_pid:
        _state.exporter.close()


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    if _state.exporter is not None:
        _state.exporter.close()
    targets = settings.targets_dir()
    if targets is not None and (targets / "workers").is_dir():
        from membench.targets import prune_dead_targets

        prune_dead_targets(targets / "workers")


@signals.task_success.connect
def _on_task_success(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) == PROCESS_BATCH:
        current_metrics().task_runs["success"].inc()


@signals.task_failure.connect
def _on_task_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    if getattr(sender, "name", None) != PROCESS_BATCH:
        return
    # WorkerLostError is raised in the main process after a child died: the child counted nothing.
    if isinstance(exception, WorkerLostError):
        outcome = "lost"
    elif isinstance(exception, InvalidParameter):
        outcome = "rejected"
    else:
        outcome = "failure"
    current_metrics().task_runs[outcome].inc()
