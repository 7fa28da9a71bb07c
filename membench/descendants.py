"""Processes that leave the worker they started in, caught: membench adopts every orphaned
descendant (a child subreaper), so one that escaped a stopped worker's process group or session
(`Popen(..., start_new_session=True)` in a payload) is found among membench's own children,
ended with its whole tree, and reported.

Without adoption an orphan goes to init, out of reach: killing the worker's process group
misses a child in a session of its own. A cgroup per worker would catch it too, but needs a
writable cgroup hierarchy (root, or delegation), and costs more: 303 us per worker here, against
69 us once per run plus 34 us per worker stopped for the adoption (benchmarks/escape_catchers.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass

from membench.processes import pid_alive
from membench.procfs import list_children, list_tree, read_cmdline

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True, slots=True)
class Escaped:
    """A process found running outside the worker that started it, then killed."""

    pid: int
    argv: list[str]

    def describe(self) -> str:
        return f"pid {self.pid} ({' '.join(self.argv)[:200] or '?'})"


class Adopter:
    """This process as the subreaper of everything it starts. `strays` are its children that
    are neither the ones it had when adoption began nor those it was told to keep."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.active = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        self._keep = set(list_children(os.getpid())) if self.active else set()

    def keep(self, pids: Collection[int]) -> None:
        """Children started on purpose (a broker, say), never strays."""
        self._keep.update(pids)

    def end_strays(self, stopped: Collection[int] = (), deadline_s: float = 5.0) -> list[Escaped]:
        """Kill every stray child's whole tree and reap it; return the strays that escaped.

        A stray of a process group in `stopped` (the worker's own, just killed: a pool child
        orphaned while it dies) or one already a zombie did not escape: reaped silently."""
        if not self.active:
            return []
        escaped: list[Escaped] = []
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            strays = [pid for pid in list_children(os.getpid()) if pid not in self._keep]
            if not strays:
                break
            for pid in strays:
                if pid_alive(pid) and _group(pid) not in stopped:
                    escaped.append(Escaped(pid, _argv(pid)))
                # Its descendants become our children as it dies: the next round finds them.
                for member in reversed(list_tree(pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        return escaped


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _argv(pid: int) -> list[str]:
    try:
        return read_cmdline(pid)
    except OSError:
        return []
