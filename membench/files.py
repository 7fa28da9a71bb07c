"""Reading what a user points membench at: a file (a regular file only) or an HTTP body, never
more than a stated number of bytes, nor for longer than a stated time.

A FIFO would block the read for ever, and `/dev/zero` or `/dev/urandom` (or a symlink to either)
would be read until memory runs out; neither is a results.json or a schedule. The file is opened
without blocking (a FIFO with no writer opens at once), then checked by what it is, not by name.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from membench.units import MIB

_KINDS = {
    stat.S_IFREG: "a regular file",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


class UnreadableFile(ValueError):
    """Why a named file is not read, in words that fit after its path: `{path}: {reason}`."""


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The whole content of `path`, a regular file of at most `limit` bytes; else UnreadableFile.

    OSError (missing, no permission) passes through for the caller to word.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise UnreadableFile(f"is {kind}, not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(MIB, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UnreadableFile(f"is larger than {_size(limit)}, the most read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _size(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit >= MIB else f"{limit} bytes"


def not_a_directory(path: Path) -> str | None:
    """Why `path` cannot be made a directory when something else stands in its way: itself or
    an ancestor exists and is not a directory (e.g. '/dev/full is a character device'). None
    when the way is clear; permissions and space are for a write to find."""
    for candidate in (path, *path.parents):
        try:
            mode = candidate.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):  # missing, or under a non-directory
            if candidate.is_symlink():
                return f"{candidate} is a symbolic link to nothing ({os.readlink(candidate)})"
            continue
        except OSError:
            return None  # e.g. no permission to look: the write says so
        if stat.S_ISDIR(mode):
            return None
        kind = _KINDS.get(stat.S_IFMT(mode), "another kind of file")
        return f"{candidate} is {kind}, not a directory"
    return None


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def read_bounded(stream: Readable, limit: int, seconds: float) -> bytes:
    """All of `stream` (an HTTP response), if it ends within `limit` bytes and `seconds`; else
    UnreadableFile. A server streaming an endless body, or trickling one, is cut off: the
    socket's own timeout bounds each read only."""
    deadline = time.monotonic() + seconds
    # read1: what has arrived, where read(n) waits for all n bytes of a trickle.
    read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = read(min(MIB, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise UnreadableFile(f"answered with more than {_size(limit)}, the most read")
        if time.monotonic() > deadline:
            raise UnreadableFile(f"did not finish its answer within {seconds:g} s")
