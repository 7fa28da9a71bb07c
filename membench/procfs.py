"""Read a process's memory from /proc: RSS, peak RSS (VmHWM), PSS, USS, swap; reset the peak.

One reader for both sides: the exporter reads its own pid at scrape time, the runner reads the
worker's pids from outside. `proc_root` is injectable so tests can read fixture files.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from membench.units import KIB

PROC_ROOT = Path("/proc")
_READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    """Memory of one process in bytes; `pss`/`uss`/`swap` are None if smaps_rollup is unreadable."""

    rss: int
    peak_rss: int
    pss: int | None
    uss: int | None
    swap: int | None
    threads: int | None = None  # OS threads (status `Threads:`), None where not listed
    stopped: bool = False  # status `State: T` or `t`: stopped by a signal (SIGSTOP) or a tracer


def read_text(path: Path) -> str:
    """The whole file in as few system calls as possible: open, one read, close.

    Every system call releases the GIL, and a thread that wants it back while a CPU-bound
    thread runs waits up to the switch interval: in a worker under load, the number of system
    calls of a scrape sets its latency. `Path.read_text` makes nine per file (2 x fstat, an
    isatty ioctl, 2 x lseek, ...); this makes three. A /proc file is generated whole on a read
    from offset 0 that is large enough, so a short read is the end of it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, _READ_SIZE)]
        while len(chunks[-1]) == _READ_SIZE:
            chunks.append(os.read(fd, _READ_SIZE))
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _parse_kib_fields(text: str, wanted: set[str]) -> dict[str, int]:
    """Parse `Name:   123 kB` lines, returning bytes for the wanted names."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name in wanted:
            fields[name] = int(rest.split()[0]) * KIB
    return fields


def _read_status(pid: int | str, proc_root: Path) -> tuple[int, int, int | None, bool]:
    """(VmRSS, VmHWM) in bytes, the thread count and whether it is stopped, from one read of
    /proc/<pid>/status."""
    text = read_text(proc_root / str(pid) / "status")
    fields = _parse_kib_fields(text, {"VmRSS", "VmHWM"})
    if "VmRSS" not in fields:
        # A zombie (exited, not yet reaped) has no memory lines: it is gone, like a vanished pid.
        raise ProcessLookupError(f"process {pid} has exited")
    _, found, rest = text.partition("\nThreads:")
    threads = int(rest.split(None, 1)[0]) if found else None
    _, _, state = text.partition("\nState:")
    return fields["VmRSS"], fields["VmHWM"], threads, state.lstrip()[:1] in ("T", "t")


def read_status_memory(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> tuple[int, int]:
    """Return (VmRSS, VmHWM) in bytes from /proc/<pid>/status (cheap: no page-table walk)."""
    rss, peak_rss, _, _ = _read_status(pid, proc_root)
    return rss, peak_rss


def read_meminfo(proc_root: Path = PROC_ROOT) -> dict[str, int]:
    """System memory (/proc/meminfo: MemTotal, MemAvailable, ...) in bytes."""
    text = read_text(proc_root / "meminfo")
    return _parse_kib_fields(text, {"MemTotal", "MemAvailable", "SwapTotal", "SwapFree"})


def read_smaps_rollup(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> dict[str, int]:
    """Return the smaps_rollup totals (Rss, Pss, Private_*, Swap, ...) in bytes."""
    text = read_text(proc_root / str(pid) / "smaps_rollup")
    wanted = {"Rss", "Pss", "Private_Clean", "Private_Dirty", "Swap", "SwapPss"}
    return _parse_kib_fields(text, wanted)


def read_process_memory(
    pid: int | str = "self", proc_root: Path = PROC_ROOT, with_pss: bool = True
) -> ProcessMemory:
    """Read one process's memory. Raises FileNotFoundError/ProcessLookupError if it is gone."""
    rss, peak_rss, threads, stopped = _read_status(pid, proc_root)
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
    return ProcessMemory(rss, peak_rss, pss, uss, swap, threads, stopped)


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


def _stat_fields(pid: int | str, proc_root: Path) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name, from field 3 (state) on."""
    stat = read_text(proc_root / str(pid) / "stat")
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def read_cpu_seconds(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> float:
    """User + system CPU time of the process, from /proc/<pid>/stat."""
    fields = _stat_fields(pid, proc_root)
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def read_start_time(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> int:
    """When the process started, in clock ticks since boot: with the pid, it names one process
    for the machine's uptime (a pid alone is reused)."""
    return int(_stat_fields(pid, proc_root)[19])


def read_parent_pid(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> int:
    """The pid of the process's parent (after it dies, its reaper's: init or a subreaper)."""
    return int(_stat_fields(pid, proc_root)[1])


def read_cmdline(pid: int | str = "self", proc_root: Path = PROC_ROOT) -> list[str]:
    """The process's argv ([] for a kernel thread or a zombie)."""
    raw = read_text(proc_root / str(pid) / "cmdline")
    return raw.rstrip("\0").split("\0") if raw else []


def list_children(pid: int, proc_root: Path = PROC_ROOT) -> list[int]:
    """Direct children of `pid`, from /proc/<pid>/task/*/children (needs CONFIG_PROC_CHILDREN)."""
    children: list[int] = []
    task_dir = proc_root / str(pid) / "task"
    for tid in os.listdir(task_dir):
        try:
            children.extend(int(c) for c in read_text(task_dir / tid / "children").split())
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


class OwnMemory:
    """This process's VmRSS and VmHWM, and the reset of VmHWM, in about 10 us: descriptors kept
    open (`pread` of /proc/self/status, `write` to clear_refs), where opening, reading and
    parsing status costs ~50 us and reopening clear_refs ~40 us (benchmarks/instrument_cost.py:
    the instrument does this for every task). getrusage's ru_maxrss would be cheaper still, but
    it reads the kernel's per-CPU counters without summing them: ~200 KiB below VmHWM here.

    A descriptor of /proc/self names the process that opened it: a forked child reopens.
    """

    def __init__(self) -> None:
        self._pid = 0
        self._status = -1
        self._clear_refs = -1

    def _open(self) -> None:
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid  # a forked child's copies are the parent's descriptors: left alone
        self._status = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._clear_refs = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            self._clear_refs = -1  # not permitted: peaks are then since the process started

    def read(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in bytes."""
        self._open()
        status = os.pread(self._status, _READ_SIZE, 0)
        return _status_field(status, b"\nVmRSS:"), _status_field(status, b"\nVmHWM:")

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS; False where that is not permitted."""
        self._open()
        if self._clear_refs < 0:
            return False
        try:
            os.write(self._clear_refs, b"5")
        except OSError:
            return False
        return True


def _status_field(status: bytes, name: bytes) -> int:
    start = status.index(name) + len(name)
    return int(status[start : status.index(b"kB", start)]) * KIB
