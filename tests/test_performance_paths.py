"""The cheap paths docs/performance.md relies on: few-syscall /proc reads, the exporter opt-out,
readiness announced by the worker, and the immediate stop of an idle worker."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import GOOD_PARAMS, StartWorker, send_batch

from membench.exporter.collector import ProcessMemoryCollector
from membench.processes import pid_alive, wait_for
from membench.procfs import (
    read_cpu_seconds,
    read_process_memory,
    read_status_memory,
    read_thread_count,
)
from membench.run.worker import WorkerProcess
from membench.units import KIB
from membench.workers.scenarios import SCENARIOS

EACH_POOL = pytest.mark.parametrize("scenario", ["prefork_sequential", "gevent_greenlets"])


def test_a_proc_file_longer_than_one_read_is_read_whole(tmp_path: Path) -> None:
    status = tmp_path / "77" / "status"
    status.parent.mkdir()
    padding = "".join(f"Pad{i}:\t{'x' * 60}\n" for i in range(2000))  # ~130 KB: several reads
    status.write_text(f"Name:\tcelery\n{padding}VmHWM:\t 2048 kB\nVmRSS:\t 1024 kB\nThreads:\t7\n")
    assert read_status_memory(77, tmp_path) == (1024 * KIB, 2048 * KIB)
    assert read_process_memory(77, tmp_path, with_pss=False).threads == 7


def test_threads_come_from_status_and_match_the_task_directory() -> None:
    memory = read_process_memory()
    assert memory.threads == read_thread_count()


def test_own_cpu_seconds_match_proc_stat() -> None:
    collector = ProcessMemoryCollector({"role": "main"})
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass  # burn a little CPU so both clocks have moved
    ours, proc = collector.cpu_seconds(), read_cpu_seconds()
    assert abs(ours - proc) < 0.05, (ours, proc)  # /proc/self/stat ticks are 10 ms


def _worker(redis_url: str, tmp_path: Path, scenario: str, **extra_env: str) -> WorkerProcess:
    return WorkerProcess(
        SCENARIOS[scenario], 1, redis_url, tmp_path, secrets.token_hex(4), extra_env=extra_env
    )


@pytest.mark.slow
def test_worker_without_exporter_runs_tasks_and_registers_nothing(
    redis_url: str, celery_app: Any, tmp_path: Path
) -> None:
    worker = _worker(redis_url, tmp_path, "prefork_sequential", MEMBENCH_EXPORTER="off")
    worker.start()
    try:
        node = worker.node
        wait_for(
            lambda: celery_app.control.ping(destination=[node], timeout=0.2),
            60,
            what="a ping answer",
        )
        result = send_batch(celery_app, worker, **GOOD_PARAMS)
        assert result.get(timeout=60)["subtasks_done"] == GOOD_PARAMS["subtasks"]
        assert not list((worker.targets_dir / "workers").glob("*.json"))
    finally:
        worker.stop()


@pytest.mark.slow
@EACH_POOL
def test_ready_is_announced_and_an_idle_worker_stops_at_once_leaving_nothing(
    scenario: str, celery_app: Any, start_worker: StartWorker
) -> None:
    worker = start_worker(scenario)
    assert worker.ready_path.read_text() == str(worker.pid)
    # stop() asks the worker whether it is idle: wait for its control consumer (a gevent
    # worker starts it up to ~1 s after ready; unanswered, stop() would be a warm one).
    node = worker.node
    wait_for(lambda: celery_app.control.ping(destination=[node], timeout=0.1), 10)
    tree = worker.tree()
    assert len(list((worker.targets_dir / "workers").glob("*.json"))) == len(tree)
    code = worker.stop()
    # Killed at once (SIGKILL), not a warm shutdown (exit 0 after 2.5-4 s of Celery's timeouts).
    assert code == -9, code
    assert not any(pid_alive(pid) for pid in tree)
    assert not list((worker.targets_dir / "workers").glob("*.json"))
    assert not worker.ready_path.exists()


@pytest.mark.slow
@EACH_POOL
def test_a_busy_worker_still_gets_a_warm_stop(
    scenario: str, celery_app: Any, start_worker: StartWorker
) -> None:
    worker = start_worker(scenario)
    result = send_batch(celery_app, worker, **{**GOOD_PARAMS, "subtasks": 1, "hold_s": 2.0})
    wait_for(lambda: result.state == "STARTED", 30, 0.02, what="the task to start")
    worker.stop()
    # The warm shutdown let the task finish and store its result.
    assert result.get(timeout=10)["subtasks_done"] == 1
    assert not list((worker.targets_dir / "workers").glob("*.json"))
    assert os.path.exists(worker.log_path)
