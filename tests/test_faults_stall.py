"""A stalled worker (SIGSTOP, then SIGCONT) is flagged: results.json records how long the sampler
saw it stopped, and the progress line warns; the run is not reported as a plain "ok"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import task_received

from membench.processes import wait_for

pytestmark = pytest.mark.slow

STOPPED_FOR_S = 2.5


def test_a_stopped_worker_is_flagged_in_results_and_on_stderr(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "membench", "run", "--scenarios", "gevent_greenlets"]
    argv += ["--subtasks", "1", "--size", "1", "--time", "1", "--workers", "1", "--runs", "1"]
    argv += ["--output", str(tmp_path)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        wait_for(lambda: proc.poll() is not None or task_received(proc.pid), 90, what="the task")
        (worker,) = [c for c in psutil.Process(proc.pid).children() if "celery" in c.cmdline()]
        worker.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            # The fault's own length, not a synchronisation: the worker stays stopped this long.
            wait_for(lambda: time.monotonic() - stopped_at >= STOPPED_FOR_S, 10, interval=0.1)
        finally:
            worker.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    (run,) = json.loads((tmp_path / "results.json").read_text())["scenarios"][0]["runs"]
    # The sampler reads every 50 ms: it saw nearly all of the stop.
    assert STOPPED_FOR_S - 0.5 <= run["stalled_s"] <= STOPPED_FOR_S + 1.0, run["stalled_s"]
    assert "WARNING: a worker process was stopped" in err
