"""A broker that dies during a run is a fault reported, never lost: the run in flight is recorded
failed with the reason; an embedded redis-server is restarted and the next scenario runs; an
external one stops the run cleanly, results written, one line on stderr, exit 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from helpers import membench, task_received

from membench.broker import EmbeddedRedis
from membench.processes import port_in_use, wait_for

pytestmark = pytest.mark.slow

RUN = ["--subtasks", "2", "--size", "1", "--time", "3", "--workers", "1", "--runs", "1"]
SCENARIOS = "gevent_greenlets,prefork_sequential"


def _run(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "membench", "run", *RUN, "--scenarios", SCENARIOS]
    argv += ["--output", str(tmp_path), *extra]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _runs(tmp_path: Path) -> dict[str, list[dict]]:
    document = json.loads((tmp_path / "results.json").read_text())
    return {s["scenario"]: s["runs"] for s in document["scenarios"]}


def _kill_broker_mid_task(tmp_path: Path, broker_pid: Callable[[int], int], *extra: str) -> tuple:
    """Run, SIGKILL the broker (its pid given the membench pid) once the task runs; the outcome."""
    proc = _run(tmp_path, *extra)
    try:
        wait_for(lambda: proc.poll() is not None or task_received(proc.pid), 90, what="the task")
        os.kill(broker_pid(proc.pid), signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    assert "Approach" in out  # the table of what ran
    runs = _runs(tmp_path)
    (lost,) = runs["gevent_greenlets"]
    assert lost["status"] == "failed" and "broker lost" in lost["reason"], lost
    return runs, err


def _embedded_redis_of(membench_pid: int) -> int:
    (server,) = [
        p for p in psutil.Process(membench_pid).children() if p.name().startswith("redis-server")
    ]
    return server.pid


def test_an_embedded_broker_that_dies_is_restarted_and_the_next_scenario_runs(
    tmp_path: Path,
) -> None:
    runs, err = _kill_broker_mid_task(tmp_path, _embedded_redis_of)
    assert "restarted it" in err
    (after,) = runs["prefork_sequential"]
    assert after["status"] == "ok", after["reason"]


def test_an_external_broker_that_dies_stops_the_run_cleanly(tmp_path: Path) -> None:
    with EmbeddedRedis() as external:
        assert external.proc is not None
        server = external.proc.pid
        runs, err = _kill_broker_mid_task(tmp_path, lambda _: server, "--broker", external.url)
    stopped = [line for line in err.splitlines() if "stopped" in line]
    assert len(stopped) == 1 and "broker lost" in stopped[0], err
    assert "prefork_sequential" not in runs or runs["prefork_sequential"] == []
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is False


def test_a_worker_given_no_broker_checks_the_default_one() -> None:
    if port_in_use("127.0.0.1", 6379):
        pytest.skip("something listens on the default broker's port here")
    environment = {k: v for k, v in os.environ.items() if k != "MEMBENCH_BROKER_URL"}
    result = membench("worker", "gevent_greenlets", env=environment, timeout=60)
    assert result.returncode == 2, result.stderr  # it retried for ever
    (line,) = result.stderr.strip().splitlines()
    assert "--broker (not given: the default, redis://127.0.0.1:6379/0): cannot reach" in line
