"""Prometheus file_sd target files: each exporter writes its own; readers list, prune the dead.

A file is `<targets_dir>/<job>/<hostname>_<pid>.json`, one entry `{"targets": [host:port],
"labels": {...}}`, written atomically so Prometheus never reads half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

from membench.files import read_regular_file
from membench.jsonfile import write_json_atomic
from membench.processes import pid_alive
from membench.units import MIB

WORKERS_JOB = "workers"


class TargetGroup(TypedDict):
    """One entry of a file_sd file: the addresses to scrape and the labels they get."""

    targets: list[str]
    labels: dict[str, str]


def target_file_name(pid: int | None = None) -> str:
    return f"{socket.gethostname()}_{pid or os.getpid()}.json"


def write_target(job_dir: Path, address: str, labels: dict[str, str]) -> Path:
    """Write this process's target, pruning dead processes' targets first."""
    job_dir.mkdir(parents=True, exist_ok=True)
    prune_dead_targets(job_dir)
    path = job_dir / target_file_name()
    group: TargetGroup = {"targets": [address], "labels": labels}
    write_json_atomic(path, [group], indent=None)
    return path


def prune_dead_targets(job_dir: Path) -> list[Path]:
    """Remove targets this host's dead processes left (killed children never clean up)."""
    prefix = f"{socket.gethostname()}_"
    removed = []
    for path in job_dir.glob(f"{prefix}*.json"):
        pid_text = path.stem.removeprefix(prefix)
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path)
    return removed


def _entries(targets_dir: Path, job: str) -> Iterator[tuple[str, list[TargetGroup]]]:
    """(file stem, entries) of every readable target file of `job` (files may vanish)."""
    for path in sorted((targets_dir / job).glob("*.json")):
        try:
            yield path.stem, json.loads(read_regular_file(path, MIB))
        except (OSError, ValueError):  # vanished, half-written, or not a target file at all
            continue


def read_targets(targets_dir: Path, job: str = WORKERS_JOB) -> list[TargetGroup]:
    """The entries currently registered for `job`."""
    return [entry for _, entries in _entries(targets_dir, job) for entry in entries]


def addresses_by_pid(targets_dir: Path, job: str = WORKERS_JOB) -> dict[int, list[str]]:
    """Registered host:port addresses by the pid in each file's name."""
    out: dict[int, list[str]] = {}
    for stem, entries in _entries(targets_dir, job):
        pid = stem.rpartition("_")[2]
        if pid.isdigit():
            out[int(pid)] = [address for entry in entries for address in entry["targets"]]
    return out
