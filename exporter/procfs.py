"""Read a process's memory from /proc: RSS, peak RSS (VmHWM), PSS, USS, swap; reset the peak.

One reader for both sides: the exporter reads its own pid at scrape time, the runner reads the
worker's pids from outside. `proc_root` is injectable so tests can read fixture files.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

PROC_ROOT = Path("/proc")
_KIB = 1024


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    """Memory of one process in bytes; `pss`/`uss`/`swap` are None if smaps_rollup is unreadable."""

    rss: int
    peak_rss: int
    pss: int | None
    uss: int | None
    swap: int | None


def _parse_kib_fields(text: str, wanted: set[str]) -> dict[str, int]:
    """Parse `Name:   123 kB` lines, returning bytes for the wanted names."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name in wanted:
            fields[name] = int(rest.split()[0]) * _KIB
    return fields


def read_status_memory(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> tuple[int, int]:
    """Return (VmRSS, VmHWM) in bytes from /proc/<pid>/status (cheap: no page-table walk)."""
    text = (proc_root / str(pid) / "status").read_text()
    fields = _parse_kib_fields(text, {"VmRSS", "VmHWM"})
    if "VmRSS" not in fields:
        # A zombie (exited, not yet reaped) has no memory lines: it is gone, like a vanished pid.
        raise ProcessLookupError(f"process {pid} has exited")
    return fields["VmRSS"], fields["VmHWM"]


def read_meminfo(proc_root: Path = PROC_ROOT) -> dict[str, int]:
    """System memory (/proc/meminfo: MemTotal, MemAvailable, ...) in bytes."""
    text = (proc_root / "meminfo").read_text()
    return _parse_kib_fields(text, {"MemTotal", "MemAvailable", "SwapTotal", "SwapFree"})


def read_smaps_rollup(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> dict[str, int]:
    """Return the smaps_rollup totals (Rss, Pss, Private_*, Swap, ...) in bytes."""
    text = (proc_root / str(pid) / "smaps_rollup").read_text()
    wanted = {"Rss", "Pss", "Private_Clean", "Private_Dirty", "Swap", "SwapPss"}
    return _parse_kib_fields(text, wanted)


def read_process_memory(
    pid: int | str = "self", proc_root: Path = PROC_ROOT, with_pss: bool = True
) -> ProcessMemory:
    """Read one process's memory. Raises FileNotFoundError/ProcessLookupError if it is gone."""
    rss, peak_rss = read_status_memory(pid, proc_root)
    pss = uss = swap = None
    if with_pss:
        try:
            rollup = read_smaps_rollup(pid, proc_root)
        except (PermissionError, FileNotFoundError):
            rollup = {}  # kernels before 4.14 have no smaps_rollup; PSS is then unknown
        if "Pss" in rollup:
            pss = rollup["Pss"]
            uss = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
            swap = rollup.get("Swap", 0)
    return ProcessMemory(rss=rss, peak_rss=peak_rss, pss=pss, uss=uss, swap=swap)


def reset_peak_rss(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> bool:
    """Reset VmHWM to the current RSS (`5 > clear_refs`); False where that is not permitted."""
    try:
        with open(proc_root / str(pid) / "clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def read_thread_count(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> int:
    """Number of OS threads of the process (gevent greenlets are not OS threads)."""
    return len(os.listdir(proc_root / str(pid) / "task"))


def read_cpu_seconds(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> float:
    """User + system CPU time of the process, from /proc/<pid>/stat."""
    stat = (proc_root / str(pid) / "stat").read_text()
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def list_children(pid: int, proc_root: Path = PROC_ROOT) -> list[int]:
    """Direct children of `pid`, from /proc/<pid>/task/*/children (needs CONFIG_PROC_CHILDREN)."""
    children: list[int] = []
    task_dir = proc_root / str(pid) / "task"
    for tid in os.listdir(task_dir):
        try:
            children.extend(int(c) for c in (task_dir / tid / "children").read_text().split())
        except FileNotFoundError:
            continue
    return children


def list_tree(pid: int, proc_root: Path = PROC_ROOT) -> list[int]:
    """`pid` and all its descendants."""
    tree = [pid]
    i = 0
    while i < len(tree):
        with contextlib.suppress(FileNotFoundError):
            tree.extend(list_children(tree[i], proc_root))
        i += 1
    return tree
