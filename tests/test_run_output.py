"""What `membench run` leaves behind when things go wrong with its output, and with --matrix:
a full disk still prints the table and names the file it could not write; every finished
combination of a matrix is marked complete; a second run into a directory a live run writes to
is refused, naming the first, and a killed run's hold ends with it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import IN_CI, membench, task_received

from membench.files import not_a_directory
from membench.processes import wait_for
from membench.run.output import LOCK_FILE, OutputBusy, OutputLock

pytestmark = pytest.mark.slow

TINY = ["--subtasks", "1", "--size", "1", "--time", "0", "--workers", "1", "--runs", "1"]


def test_every_finished_matrix_combination_is_complete(tmp_path: Path) -> None:
    argv = ["run", *TINY, "--scenarios", "gevent_greenlets", "--matrix", "size=1,2"]
    result = membench(*argv, "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "matrix.json").read_text())
    assert summary["complete"] is True
    for combination in summary["combinations"]:
        document = json.loads((tmp_path / combination["results"]).read_text())
        assert document["complete"] is True, combination["label"]


def test_a_full_disk_still_prints_the_table_and_names_the_file(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to mount a small tmpfs privately")
    disk = tmp_path / "disk"
    disk.mkdir()
    # A 64 KiB tmpfs, 60 KiB of it filled: the output check's empty probe file fits, results.json
    # does not. In a private mount namespace, so nothing outside the test sees the mount.
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {disk} || exit 99; "
        f"dd if=/dev/zero of={disk}/fill bs=1k count=60 2>/dev/null; "
        f'"$0" -m membench "$@"; code=$?; echo LISTING; ls -A {disk}/out; exit $code'
    )
    argv = ["unshare", "--mount", "sh", "-c", script, sys.executable, "run", *TINY]
    argv += ["--scenarios", "gevent_greenlets", "--output", f"{disk}/out"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if result.returncode == 99:
        message = f"cannot mount a tmpfs here: {result.stderr.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Peak Memory (MB)" in result.stdout  # the table reached stdout
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors and all("cannot write" in line for line in errors), result.stderr
    assert any(f"{disk}/out/results.json" in line for line in errors), errors
    assert "Traceback" not in result.stderr
    left = result.stdout.rpartition("LISTING\n")[2].split()
    assert not [name for name in left if name.endswith(".tmp")], left  # no half-written file


def test_a_second_run_into_a_live_runs_output_is_refused_and_the_first_keeps_its_files(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "membench", "run", "--scenarios", "prefork_sequential"]
    argv += ["--subtasks", "1", "--size", "1", "--time", "120", "--workers", "1", "--runs", "1"]
    first = subprocess.Popen(
        [*argv, "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: first.poll() is not None or task_received(first.pid), 90, what="task")
        assert first.poll() is None, first.communicate()
        second = membench("run", *TINY, "--scenarios", "gevent_greenlets", "--output", str(out))
        first.send_signal(signal.SIGTERM)  # its results, written now, are the first's alone
        _, first_err = first.communicate(timeout=10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert second.returncode == 2, second.stderr
    assert second.stdout == ""
    (line,) = second.stderr.splitlines()
    assert line.startswith("membench run: error: --output: another membench run "), line
    assert f"(pid {first.pid}, started " in line and str(out) in line, line
    assert first.returncode == 130, first_err.decode()[-2000:]
    document = json.loads((out / "results.json").read_text())
    assert document["complete"] is False
    assert [s["scenario"] for s in document["scenarios"]] == ["prefork_sequential"]
    assert LOCK_FILE not in os.listdir(out)
    # Finished (interrupted or not), the directory is free; the next run overwrites it.
    third = membench("run", *TINY, "--scenarios", "gevent_greenlets", "--output", str(out))
    assert third.returncode == 0, third.stderr[-2000:]
    document = json.loads((out / "results.json").read_text())
    assert document["complete"] is True
    assert [s["scenario"] for s in document["scenarios"]] == ["gevent_greenlets"]
    assert LOCK_FILE not in os.listdir(out)


def test_a_killed_runs_hold_on_its_output_dies_with_it(tmp_path: Path) -> None:
    code = "import sys; from pathlib import Path; from membench.run.output import OutputLock; "
    code += "OutputLock(Path(sys.argv[1])).hold(); print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(OutputBusy, match=rf"\(pid {holder.pid}, started "):
            OutputLock(tmp_path).hold()
        holder.kill()  # no release: the lock file stays, naming a dead pid
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert (tmp_path / LOCK_FILE).exists()
    with OutputLock(tmp_path):
        pass
    assert os.listdir(tmp_path) == []


def test_what_stands_in_the_way_of_an_output_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    (tmp_path / "file").write_text("")
    assert not_a_directory(tmp_path / "link" / "out") == (
        f"{tmp_path / 'link'} is a symbolic link to nothing ({tmp_path / 'gone'})"
    )
    assert not_a_directory(tmp_path / "file" / "a" / "b") == (
        f"{tmp_path / 'file'} is a regular file, not a directory"
    )
    assert not_a_directory(tmp_path / "new" / "out") is None
    assert not_a_directory(tmp_path) is None
