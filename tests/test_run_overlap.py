"""`membench run` starts the next run's worker while it stops the last one, and that one's whole
tree is gone before the next run begins: a tree alive beside a measured one would share its
pages and lower its PSS."""

from __future__ import annotations

import pytest
from helpers import run_config

from membench.processes import pid_alive
from membench.results.model import ProgressEvent, RunEnded, RunStarted
from membench.run.records import ScenarioResult
from membench.run.runner import Runner
from membench.run.worker import WorkerProcess


@pytest.mark.slow
def test_the_next_worker_starts_during_the_stop_and_the_last_tree_is_gone_before_its_run(
    redis_url: str,
) -> None:
    config = run_config(["prefork_threads", "gevent_greenlets"], runs=2, hold_s=0.1)
    measured: list[tuple[WorkerProcess, list[int]]] = []  # each run's worker and its tree
    at_start: list[tuple[bool, bool, bool]] = []  # (spawned, not yet ready, last tree gone)
    runner: Runner

    def watch(event: ProgressEvent) -> None:
        worker = runner.worker
        if isinstance(event, RunEnded):
            assert worker is not None
            measured.append((worker, worker.tree()))
        elif isinstance(event, RunStarted) and measured:
            _, last_tree = measured[-1]
            spawned = worker is not None and worker is not measured[-1][0] and worker.alive()
            not_ready = worker is not None and worker.ready_at is None
            at_start.append((spawned, not_ready, not any(pid_alive(p) for p in last_tree)))

    runner = Runner(config, redis_url, watch)
    results: list[ScenarioResult] = []
    runner.run(results)

    assert [r.status for s in results for r in s.runs] == ["ok"] * 4
    # Runs 2, 3 (the next scenario's first) and 4: each worker spawned before its run began,
    # while the last one stopped, and not one process of the last tree left by then.
    assert at_start == [(True, True, True)] * 3
    pids = [worker.pid for worker, _ in measured]
    assert len(set(pids)) == 4  # a fresh worker per run
    assert all(len(tree) == 2 for _, tree in measured[:2])  # prefork: main and its child
    assert not any(pid_alive(p) for _, tree in measured for p in tree)
    assert runner.worker is None
