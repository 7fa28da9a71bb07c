"""Faults that kill: a worker killed mid-run, an interrupted `membench run` (Ctrl-C, SIGTERM,
SIGHUP, its terminal closed), a prefork child killed mid-task; each is reported, nothing outlives
it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import (
    GOOD_PARAMS,
    StartWorker,
    executing_address,
    exporter_addresses,
    run_config,
    scrape,
    send_batch,
    stored_meta,
    task_received,
    task_runs,
    value,
)

from membench.exporter import names
from membench.processes import pid_alive, wait_for
from membench.results.model import ProgressEvent, RunTick
from membench.run.records import ScenarioResult
from membench.run.runner import Runner
from membench.workers.scenarios import SCENARIOS


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and pid_alive(process.pid):
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


# ---- 4. the whole worker killed mid-run ----------------------------------------------------


# A crash of the runner's sampler thread (e.g. reading the killed worker as a zombie) fails it.
@pytest.mark.slow
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_worker_killed_mid_run_fails_that_run_and_the_next_run_gets_a_fresh_worker(
    redis_url: str,
) -> None:
    config = run_config(["prefork_sequential"], runs=2)
    killed: dict[str, Any] = {}
    workers_by_run: dict[int, int] = {}
    runner: Runner

    def kill_worker_once(event: ProgressEvent) -> None:
        worker = runner.worker
        if not isinstance(event, RunTick) or worker is None:
            return
        workers_by_run[event.run] = worker.pid
        if not killed:
            killed["tree"] = worker.tree()
            killed["pid"] = worker.pid
            os.kill(worker.pid, signal.SIGKILL)

    runner = Runner(config, redis_url, kill_worker_once)
    results: list[ScenarioResult] = []
    runner.run(results)
    assert killed and len(killed["tree"]) == 2  # main process and its pool child
    first, second = results[0].runs
    assert first.status == "failed"
    assert "killed by signal 9" in first.reason, first.reason
    assert first.round_trip_s is not None
    assert first.round_trip_s < 5 < config.deadline_seconds(SCENARIOS["prefork_sequential"]) / 10
    assert second.status == "ok", second.reason
    assert workers_by_run[2] != killed["pid"]
    assert second.executing_pid not in killed["tree"]
    # Stopping the failed run took the orphaned pool child too: nothing of that group is left.
    assert _group_members(killed["pid"]) == []
    assert not any(pid_alive(pid) for pid in killed["tree"])


# ---- 5. an interrupted `membench run` ------------------------------------------------------


def _interruptible_run(out: Path, tmp: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """A `membench run` of one 120 s task into `out`, its temporary directories under `tmp`."""
    argv = [sys.executable, "-m", "membench", "run", "--scenarios"]
    argv += ["prefork_sequential", "--subtasks", "1", "--size", "1", "--time", "120"]
    argv += ["--workers", "1", "--runs", "1", "--output", str(out)]
    tmp.mkdir()
    return subprocess.Popen(argv, env=dict(os.environ, TMPDIR=str(tmp)), **popen)


def _mid_task(proc: subprocess.Popen[bytes], also: Callable[[], bool] = lambda: False) -> list[int]:
    """Wait until the run's worker has its task (calling `also` while waiting); the pids it
    started."""
    wait_for(
        lambda: also() or proc.poll() is not None or task_received(proc.pid), 90, what="the task"
    )
    assert proc.poll() is None, proc.communicate()
    started = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(started) >= 3  # redis-server, the worker and its pool child
    return started


def _stopped_cleanly(started: list[int], out: Path, tmp: Path) -> None:
    wait_for(
        lambda: not any(pid_alive(pid) for pid in started), 5, what="every started process gone"
    )
    document = json.loads((out / "results.json").read_text())
    assert document["complete"] is False
    assert (out / "memory_comparison.png").exists()
    assert os.listdir(tmp) == []  # the embedded redis-server's and the runner's, removed


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_interrupted_run_exits_130_stops_everything_and_writes_incomplete_results(
    sig: signal.Signals, tmp_path: Path
) -> None:
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    proc = _interruptible_run(
        out,
        tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        started = _mid_task(proc)
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        out_text, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert elapsed < 10
    assert f"interrupted ({sig.name})" in err.decode() and "INCOMPLETE" in err.decode()
    assert b"results.json" in out_text  # it still says where it wrote what it measured
    _stopped_cleanly(started, out, tmp)


def _take_terminal() -> None:
    """In the child, a session leader already: make stdin's terminal its controlling one."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _drain(fd: int) -> bool:
    """Read what the terminal holds, so the run never blocks writing to it; always False."""
    with contextlib.suppress(OSError):  # BlockingIOError: nothing more for now
        while os.read(fd, 65536):
            pass
    return False


@pytest.mark.slow
def test_a_closed_terminal_ends_a_run_like_ctrl_c(tmp_path: Path) -> None:
    """The terminal, not `kill`: closing it sends SIGHUP, and every later write to it fails, so
    the table printed before results.json is written must not stop the write."""
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    master, slave = os.openpty()
    os.set_blocking(master, False)
    try:
        proc = _interruptible_run(
            out,
            tmp,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
    finally:
        os.close(slave)
    try:
        started = _mid_task(proc, also=lambda: _drain(master))
        os.close(master)  # the terminal window closes
        master = -1
        returncode = proc.wait(timeout=10)
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert returncode == 130
    _stopped_cleanly(started, out, tmp)


# ---- 6. a prefork child killed mid-task ----------------------------------------------------


@pytest.mark.slow
def test_child_killed_mid_task_is_counted_lost_and_its_replacement_exports(
    start_worker: StartWorker, celery_app: Any, redis_url: str
) -> None:
    worker = start_worker("prefork_sequential")
    main = exporter_addresses(worker)[names.ROLE_MAIN][0]
    child = executing_address(worker)
    (child_pid,) = [p for p in worker.tree() if p != worker.pid]
    result = send_batch(celery_app, worker, **{**GOOD_PARAMS, "subtasks": 1, "hold_s": 120})
    wait_for(lambda: value(scrape(child), names.SUBTASKS_IN_PROGRESS) == 1, 30, what="task running")
    os.kill(child_pid, signal.SIGKILL)
    wait_for(lambda: task_runs(worker, "lost") == 1, 30, what="the lost run counted")
    assert result.get(timeout=30, propagate=False) is not None
    assert result.state == "FAILURE"
    stored = stored_meta(redis_url, result.id)
    assert stored is not None and stored["result"]["exc_type"] == "WorkerLostError", stored
    for outcome in ("success", "failure", "rejected"):
        assert task_runs(worker, outcome) == 0
    assert value(scrape(main), names.CHILD_RECYCLES_TOTAL, reason="died") == 1

    def replacement() -> str | None:
        for path in (worker.targets_dir / "workers").glob("*.json"):
            if int(path.stem.rsplit("_", 1)[1]) not in (worker.pid, child_pid):
                (entry,) = json.loads(path.read_text())
                return str(entry["targets"][0])
        return None

    new_child = wait_for(replacement, 30, what="the replacement child's exporter")
    text = scrape(new_child)
    assert value(text, names.PROCESS_RSS_BYTES, role=names.ROLE_CHILD) > 0
    assert value(text, names.PROCESS_TASKS_IN_PROGRESS) == 0
    report = send_batch(celery_app, worker, **GOOD_PARAMS).get(timeout=60)
    assert report["pid"] != child_pid
    wait_for(lambda: task_runs(worker, "success") == 1, 10, what="the replacement's success")
    assert task_runs(worker, "lost") == 1
