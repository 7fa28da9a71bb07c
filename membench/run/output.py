"""The output directory of `membench run`, held by one live run at a time, so two runs never mix
their files in it.

The hold is an flock on LOCK_FILE inside the directory: the kernel drops it when its holder dies,
however it dies, so a killed run never blocks the next. The file names its holder (pid, start
time) for the refusal; a finished run removes it, a killed run's is taken over as it stands.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

LOCK_FILE = ".membench-run.lock"


class OutputBusy(Exception):
    """Another live run holds the directory; the message names it."""


class OutputLock:
    """The hold of one run on its output directory, from `hold` to `release`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def hold(self) -> OutputLock:
        """Take the directory or raise OutputBusy naming the run that has it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputBusy(_describe(holder, self.path.parent)) from None
            # The holder before us removes the file, then lets go: a lock on the file it
            # removed holds nothing, so take the one now at the path.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)
        self._fd = fd
        holder = {"pid": os.getpid(), "started_at": time.time()}
        with contextlib.suppress(OSError):  # a full disk: still held, just not named
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # Removed while still held: whoever opened it meanwhile sees it gone and takes a new one.
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.hold()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any], directory: Path) -> str:
    """'another membench run (pid 1234, started 2024-05-01 12:00:03) is writing to DIR'."""
    facts = []
    if isinstance(holder.get("pid"), int):
        facts.append(f"pid {holder['pid']}")
    if isinstance(holder.get("started_at"), (int, float)):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started_at"]))
        facts.append(f"started {started}")
    named = f" ({', '.join(facts)})" if facts else ""
    return f"another membench run{named} is writing to {directory}"
