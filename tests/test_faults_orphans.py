"""No process outlives the membench that started it, even a SIGKILLed one in the middle of a
task, in any pool; the temporary directories it leaves are removed by the next membench."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from helpers import task_received

from membench.processes import pid_alive, wait_for
from membench.tempdirs import OWNER_FILE, owned_tempdir

pytestmark = pytest.mark.slow


def _owned_by(pid: int) -> list[Path]:
    """The membench-* temporary directories that process `pid` created."""
    found = []
    for directory in Path(tempfile.gettempdir()).glob("membench-*"):
        try:
            if json.loads((directory / OWNER_FILE).read_text())["pid"] == pid:
                found.append(directory)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


@pytest.mark.parametrize("scenario", ["gevent_threads", "prefork_threads"])
def test_a_sigkilled_run_takes_every_worker_with_it_mid_task(scenario: str, tmp_path: Path) -> None:
    # The task holds for 2 s per subtask when membench is killed: every worker is mid-task.
    argv = [sys.executable, "-m", "membench", "run", "--scenarios", scenario]
    argv += ["--subtasks", "20", "--size", "2", "--time", "2", "--workers", "2", "--runs", "2"]
    argv += ["--output", str(tmp_path)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for(lambda: proc.poll() is not None or task_received(proc.pid), 90, what="the task")
        assert proc.poll() is None
        tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) >= 2  # redis-server and the worker (and a prefork child)
        abandoned = _owned_by(proc.pid)
        assert abandoned, "the run made no private directory"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # Not a warm shutdown waiting 2 s x 10 rounds for the task: gone within seconds.
        wait_for(lambda: not any(pid_alive(pid) for pid in tree), 10, what="every process gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Whoever comes next cleans up: the next membench's private directories prune the killed one's.
    fresh = [owned_tempdir(prefix) for prefix in ("membench-run-", "membench-redis-")]
    try:
        assert {d.name.rsplit("-", 1)[0] for d in abandoned} == {"membench-run", "membench-redis"}
        assert not [d for d in abandoned if d.exists()], abandoned
    finally:
        for directory in fresh:
            shutil.rmtree(directory)


# Ways a subtask's child leaves its worker's process group, each with its own marker argument.
ESCAPES = {
    "new session": "subprocess.Popen(['sleep', MARK], start_new_session=True)",
    "new process group": "subprocess.Popen(['sleep', MARK], process_group=0)",
    "double fork and setsid": (
        "pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            os.execvp('sleep', ['sleep', MARK])\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)"
    ),
}


@pytest.mark.parametrize("how", list(ESCAPES))
def test_a_process_that_escapes_its_worker_is_killed_and_reported(how: str, tmp_path: Path) -> None:
    mark = str(3000 + os.getpid() % 1000 + list(ESCAPES).index(how))  # `sleep N`: N is unique
    (tmp_path / "escaper.py").write_text(
        "import os\nimport subprocess\n\nMARK = " + repr(mark) + "\n\n\n"
        "def work(index, size_mb, hold_s):\n"
        "    if index:\n        return\n    " + ESCAPES[how] + "\n"
    )

    def leftovers() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", mark]]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEMBENCH_BROKER_URL")}
    argv = [str(Path(sys.executable).with_name("membench")), "run", "--payload", "escaper:work"]
    argv += ["--scenarios", "prefork_sequential", "--runs", "1", "--subtasks", "2"]
    argv += ["--size", "1", "--time", "0", "--workers", "1", "--output", "out"]
    try:
        result = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert not leftovers(), f"{how}: left running after membench run exited"
        assert result.returncode == 1, result.stderr[-3000:]
        assert "escaped the worker" in result.stdout + result.stderr
        document = json.loads((tmp_path / "out" / "results.json").read_text())
        (scenario,) = document["scenarios"]
        (escaped,) = scenario["escaped_processes"]
        assert f"sleep {mark}" in escaped
    finally:
        for process in leftovers():
            process.kill()
