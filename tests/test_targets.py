"""membench/targets.py: file_sd target files written, read and pruned in a temporary directory."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from membench.processes import pid_alive
from membench.targets import (
    WORKERS_JOB,
    addresses_by_pid,
    prune_dead_targets,
    read_targets,
    target_file_name,
    write_target,
)

HOST = socket.gethostname()


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """A pid no process has: the highest ones are handed out last, and this one is checked."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    for pid in range(pid_max - 1, pid_max - 1000, -1):
        if not pid_alive(pid) and not Path(f"/proc/{pid}").exists():
            return pid
    pytest.skip("no free pid near pid_max")


def entries(path: Path) -> list[dict[str, object]]:
    return json.loads(path.read_text())


def place(job_dir: Path, name: str, addresses: list[str], **labels: str) -> Path:
    """A target file as another process would have written it."""
    job_dir.mkdir(parents=True, exist_ok=True)
    path = job_dir / name
    path.write_text(json.dumps([{"targets": addresses, "labels": labels}]))
    return path


# ---- names and writing ---------------------------------------------------------------------------


def test_a_file_is_named_for_host_and_pid() -> None:
    assert target_file_name(1234) == f"{HOST}_1234.json"
    assert target_file_name() == f"{HOST}_{os.getpid()}.json"


def test_write_target_creates_the_job_dir_and_one_file_sd_entry(tmp_path: Path) -> None:
    job_dir = tmp_path / "targets" / WORKERS_JOB
    path = write_target(job_dir, "127.0.0.1:9100", {"scenario": "gevent_threads", "role": "main"})
    assert path == job_dir / target_file_name()
    assert entries(path) == [
        {"targets": ["127.0.0.1:9100"], "labels": {"scenario": "gevent_threads", "role": "main"}}
    ]
    assert "\n" not in path.read_text()  # compact: indent=None
    assert os.listdir(job_dir) == [path.name]  # no temporary file left behind


def test_writing_again_replaces_this_processs_target(tmp_path: Path) -> None:
    write_target(tmp_path, "127.0.0.1:1", {})
    path = write_target(tmp_path, "127.0.0.1:2", {"role": "child"})
    assert os.listdir(tmp_path) == [path.name]
    assert entries(path) == [{"targets": ["127.0.0.1:2"], "labels": {"role": "child"}}]


def test_write_target_prunes_the_dead_first(tmp_path: Path, dead_pid: int) -> None:
    dead = place(tmp_path, f"{HOST}_{dead_pid}.json", ["127.0.0.1:9"])
    path = write_target(tmp_path, "127.0.0.1:9100", {})
    assert not dead.exists()
    assert os.listdir(tmp_path) == [path.name]


# ---- pruning -----------------------------------------------------------------------------------


def test_prune_removes_a_dead_pids_target_and_keeps_a_live_one(
    tmp_path: Path, dead_pid: int
) -> None:
    dead = place(tmp_path, f"{HOST}_{dead_pid}.json", ["127.0.0.1:9"])
    alive = place(tmp_path, f"{HOST}_{os.getpid()}.json", ["127.0.0.1:10"])
    assert prune_dead_targets(tmp_path) == [dead]
    assert not dead.exists()
    assert alive.exists()
    assert prune_dead_targets(tmp_path) == []  # nothing left to prune


def test_prune_leaves_other_hosts_and_foreign_names_alone(tmp_path: Path, dead_pid: int) -> None:
    # Another host's pid means nothing here; a name without a pid is not ours to judge.
    other_host = place(tmp_path, f"not-{HOST}_{dead_pid}.json", ["10.0.0.2:9100"])
    no_pid = place(tmp_path, f"{HOST}_static.json", ["127.0.0.1:9"])
    not_json = tmp_path / f"{HOST}_{dead_pid}.txt"
    not_json.write_text("")
    assert prune_dead_targets(tmp_path) == []
    assert other_host.exists() and no_pid.exists() and not_json.exists()


def test_prune_of_a_missing_directory_is_nothing(tmp_path: Path) -> None:
    assert prune_dead_targets(tmp_path / "absent") == []


# ---- reading -----------------------------------------------------------------------------------


def test_read_targets_lists_every_entry_of_the_job_in_file_order(tmp_path: Path) -> None:
    place(tmp_path / "workers", "b_2.json", ["127.0.0.1:2"], role="child")
    place(tmp_path / "workers", "a_1.json", ["127.0.0.1:1"], role="main")
    place(tmp_path / "loadgen", "c_3.json", ["127.0.0.1:3"])
    assert read_targets(tmp_path) == [
        {"targets": ["127.0.0.1:1"], "labels": {"role": "main"}},
        {"targets": ["127.0.0.1:2"], "labels": {"role": "child"}},
    ]
    assert read_targets(tmp_path, "loadgen") == [{"targets": ["127.0.0.1:3"], "labels": {}}]


def test_read_targets_skips_half_written_files_and_missing_jobs(tmp_path: Path) -> None:
    place(tmp_path / "workers", "a_1.json", ["127.0.0.1:1"])
    (tmp_path / "workers" / "b_2.json").write_text('[{"targets": ["127.0')
    assert read_targets(tmp_path) == [{"targets": ["127.0.0.1:1"], "labels": {}}]
    assert read_targets(tmp_path, "nobody") == []


def test_read_targets_sees_what_write_target_wrote(tmp_path: Path) -> None:
    write_target(tmp_path / "loadgen", "[::1]:9200", {"job": "loadgen"})
    assert read_targets(tmp_path, "loadgen") == [
        {"targets": ["[::1]:9200"], "labels": {"job": "loadgen"}}
    ]


def test_addresses_by_pid_reads_the_pid_from_each_file_name(tmp_path: Path) -> None:
    job_dir = tmp_path / WORKERS_JOB
    # Hostnames may contain underscores: the pid is what follows the last one.
    place(job_dir, "my_host_41.json", ["127.0.0.1:1", "127.0.0.1:2"])
    place(job_dir, "host_42.json", ["127.0.0.1:3"])
    place(job_dir, "host_static.json", ["127.0.0.1:4"])
    (job_dir / "host_43.json").write_text("not json")
    assert addresses_by_pid(tmp_path) == {41: ["127.0.0.1:1", "127.0.0.1:2"], 42: ["127.0.0.1:3"]}


def test_addresses_by_pid_joins_every_entry_of_a_file(tmp_path: Path) -> None:
    job_dir = tmp_path / "loadgen"
    job_dir.mkdir()
    document = [{"targets": ["a:1"], "labels": {}}, {"targets": ["b:2", "c:3"], "labels": {}}]
    (job_dir / "h_7.json").write_text(json.dumps(document))
    assert addresses_by_pid(tmp_path, "loadgen") == {7: ["a:1", "b:2", "c:3"]}
    assert addresses_by_pid(tmp_path) == {}


def test_addresses_by_pid_of_this_process(tmp_path: Path) -> None:
    write_target(tmp_path / WORKERS_JOB, "127.0.0.1:9100", {})
    assert addresses_by_pid(tmp_path) == {os.getpid(): ["127.0.0.1:9100"]}
