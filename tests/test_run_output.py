"""What `membench run` leaves behind when things go wrong with its output, and with --matrix:
a full disk still prints the table and names the file it could not write; every finished
combination of a matrix is marked complete."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import IN_CI, membench

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
