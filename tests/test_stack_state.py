"""`membench stack down` signals only the `stack up` process its state file names: a stale file
(the process gone, or its pid reused by another process) is reported and removed, and no foreign
process is ever signalled."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import membench

from membench.processes import pid_alive, process_identity


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process that must survive: the repro's `setsid sleep 300`."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    "state",
    [
        lambda pid: {"pid": pid},  # the file an older membench wrote: a bare pid
        lambda pid: {"pid": pid, "process": {**process_identity(pid), "start_time": 1}},
        lambda pid: {"pid": pid, "process": {**process_identity(pid), "cmdline": ["x"]}},
    ],
    ids=["bare pid", "pid reused (other start time)", "pid reused (other argv)"],
)
def test_stack_down_never_signals_a_process_it_did_not_start(
    state: object, bystander: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    state_file = tmp_path / "stack.json"
    state_file.write_text(json.dumps(state(bystander.pid)))  # type: ignore[operator]
    result = membench("stack", "down", "--dir", str(tmp_path), timeout=30)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "stale" in lines[0], result.stderr
    assert pid_alive(bystander.pid)
    assert not state_file.exists()


def test_stack_up_removes_a_stale_state_file_instead_of_refusing(
    bystander: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    state_file = tmp_path / "stack.json"
    state_file.write_text(json.dumps({"pid": bystander.pid}))
    # An unreachable --broker stops `stack up` right after the state check: nothing starts.
    broker = "redis://127.0.0.1:1/0"
    result = membench("stack", "up", "--dir", str(tmp_path), "--broker", broker, timeout=60)
    assert result.returncode == 2
    assert "removed the stale" in result.stderr and "--broker" in result.stderr
    assert not state_file.exists()
    assert pid_alive(bystander.pid)
