"""`membench run --app` faults at run time, with real workers of the example app: a task that
raises (its last line, counted), a task that hangs (--task-timeout), a worker killed mid-run, a
concurrency refused by the memory check. Each is exit 1 with every other row still run and
printed, and nothing left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import REPO, membench, read_valid_results

from membench.processes import wait_for
from membench.units import MIB

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "app_benchmark"


def app_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    done = membench("run", "--app", "tasks:app", *args, "--output", str(tmp_path), cwd=EXAMPLE)
    return done, read_valid_results(tmp_path / "results.json")


def rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["scenario"]: s["runs"][0] for s in document["scenarios"]}


def cmdline(process: psutil.Process) -> list[str]:
    """Its argv; [] for one gone or a zombie (a worker just stopped, not yet reaped)."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def no_worker_left() -> bool:
    mine = psutil.Process().children(recursive=True)
    return not [p for p in mine if "membench.run.app.launcher" in cmdline(p)]


def test_a_task_that_raises_is_counted_with_its_last_line(tmp_path: Path) -> None:
    done, document = app_run(
        tmp_path, "--task", "tasks.fail", "--kwargs", '{"message": "first\\nlast line"}',
        "--pools", "threads,prefork", "--concurrency", "2", "--tasks", "4",
    )  # fmt: skip
    assert done.returncode == 1
    found = rows(document)
    assert set(found) == {"solo-c1", "threads-c2", "prefork-c2"}
    for name, row in found.items():
        assert row["outcomes"] == {"failure": 4}, name
        assert row["errors"] == {"ValueError: last line": 4}, name
        assert row["status"] == "failed" and row["reason"] == "4 failure"
    assert "prefork -c 2: 4 x ValueError: last line" in done.stdout
    assert "membench: 3 of 3 row(s) failed or refused" in done.stderr
    assert no_worker_left()


def test_a_task_that_hangs_is_timed_out_and_every_pool_still_runs(tmp_path: Path) -> None:
    done, document = app_run(
        tmp_path, "--task", "tasks.hang", "--task-timeout", "1",
        "--pools", "prefork,gevent,threads", "--concurrency", "2", "--tasks", "4",
    )  # fmt: skip
    assert done.returncode == 1
    found = rows(document)
    assert set(found) == {"solo-c1", "prefork-c2", "gevent-c2", "threads-c2"}
    assert found["solo-c1"]["outcomes"] == {"timed_out": 1, "not_sent": 3}
    for name in ("prefork-c2", "gevent-c2", "threads-c2"):
        assert found[name]["outcomes"] == {"timed_out": 2, "not_sent": 2}, name
        assert found[name]["status"] == "failed"
    assert "gevent -c 2: FAILED: 2 timed out, 2 not sent" in done.stdout
    assert no_worker_left()


def test_a_worker_killed_mid_run_fails_its_row_and_the_next_pool_runs(tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "membench", "run", "--app", "tasks:app", "--task", "tasks.hold",
        "--args", "[1, 0.3]", "--pools", "prefork,threads", "--concurrency", "1",
        "--tasks", "10", "--output", str(tmp_path),
    ]  # fmt: skip
    runner = subprocess.Popen(
        argv, cwd=EXAMPLE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:

        def prefork_worker_busy() -> int | None:
            for process in psutil.Process(runner.pid).children():
                argv = cmdline(process)
                if "membench.run.app.launcher" in argv[2:3] and "prefork" in argv:
                    records = Path(argv[3])  # the launcher's records directory
                    if any(records.glob("*.jsonl")):
                        return process.pid
            return None

        victim = wait_for(prefork_worker_busy, timeout=60, interval=0.02)
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 1, stderr
    found = rows(json.loads((tmp_path / "results.json").read_text()))
    assert found["prefork-c1"]["status"] == "failed"
    assert "worker process killed by signal 9 during the run" in found["prefork-c1"]["reason"]
    assert found["threads-c1"]["status"] == "ok"
    assert found["threads-c1"]["outcomes"] == {"success": 10}
    assert "prefork -c 1: FAILED: worker process killed by signal 9" in stdout
    assert no_worker_left()


def test_a_concurrency_past_80_percent_of_memavailable_is_refused_after_solo(
    tmp_path: Path,
) -> None:
    # 256 tasks in flight x 120 MiB each: ~30 GB against a machine of at most 24 GiB.
    done, document = app_run(
        tmp_path, "--task", "tasks.hold", "--args", "[120, 0.1]",
        "--pools", "gevent,solo", "--concurrency", "256", "--tasks", "2",
    )  # fmt: skip
    assert done.returncode == 1
    found = rows(document)
    assert found["solo-c1"]["status"] == "ok"
    assert found["gevent-c256"]["status"] == "refused"
    assert found["gevent-c256"]["planned_need_bytes"] > 256 * 115 * MIB
    assert "gevent -c 256: REFUSED: would need" in done.stdout
    assert "(--force runs it)" in done.stdout
    assert no_worker_left()
