"""The worker's malloc: the environment that selects it, which one is active, and handing free
memory back to the kernel (malloc_trim for glibc, an arena purge for jemalloc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from pathlib import Path

ALLOCATORS = ("glibc", "arena2", "jemalloc")
# Inherited by a worker from whoever starts it, and able to change its allocator: results.json
# records them so a run is never credited to an allocator it did not use.
ALLOCATOR_ENVIRONMENT = ("MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST", "MALLOC_TOP_PAD_", "LD_PRELOAD")
# Debian's libjemalloc2 package; find_library covers other layouts.
JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)
# jemalloc's MALLCTL_ARENAS_ALL: "arena.4096.purge" purges every arena.
_JEMALLOC_ALL_ARENAS = 4096


class AllocatorUnavailable(Exception):
    """The allocator asked for cannot be used on this machine; the message says how to get it."""


def find_jemalloc() -> str | None:
    for path in JEMALLOC_PATHS:
        if Path(path).is_file():
            return path
    found = ctypes.util.find_library("jemalloc")
    return found if found and Path(found).is_absolute() else None


def allocator_env(name: str) -> dict[str, str]:
    """Environment variables that make a newly exec'd worker use allocator `name`."""
    if name == "glibc":
        return {}
    if name == "arena2":
        # glibc makes up to 8 x cores arenas, one per thread that contends; 2 caps what
        # per-thread arenas can hold on to.
        return {"MALLOC_ARENA_MAX": "2"}
    if name == "jemalloc":
        path = find_jemalloc()
        if path is None:
            raise AllocatorUnavailable(
                "libjemalloc.so.2 not found (Debian/Ubuntu: apt install libjemalloc2)"
            )
        preload = os.environ.get("LD_PRELOAD", "")
        return {"LD_PRELOAD": f"{path} {preload}".strip()}
    raise AllocatorUnavailable(f"unknown allocator {name!r} (choose from {', '.join(ALLOCATORS)})")


def inherited_allocator_environment() -> dict[str, str]:
    """The allocator variables this process would pass on to a worker it starts."""
    return {k: os.environ[k] for k in ALLOCATOR_ENVIRONMENT if k in os.environ}


def active_allocator() -> str:
    """What this process really allocates with, read from its mappings, not from flags."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    if "libjemalloc" in maps:
        return "jemalloc"
    arenas = os.environ.get("MALLOC_ARENA_MAX")
    if arenas is None:
        return "glibc"
    # An inherited value other than --malloc's own is reported as it is, not as plain glibc.
    return "arena2" if arenas == "2" else f"glibc MALLOC_ARENA_MAX={arenas}"


def release_free_memory() -> str:
    """Collect young garbage, then return the allocator's free pages to the kernel; says what
    ran. Not a full collection: in a prefork child it would visit every object inherited from
    the parent and write to its header, un-sharing copy-on-write pages (measured: tree PSS
    +11-14 MB), a side effect of the measurement rather than memory the task left behind."""
    gc.collect(1)
    libc = ctypes.CDLL(None)
    if active_allocator() == "jemalloc":
        # malloc_trim would trim glibc's (unused) heap; jemalloc keeps freed pages as dirty
        # until it decays them, so purge every arena.
        name = f"arena.{_JEMALLOC_ALL_ARENAS}.purge".encode()
        libc.mallctl(name, None, None, None, ctypes.c_size_t(0))
        return "gc.collect(1) + jemalloc arena purge"
    libc.malloc_trim(0)
    return "gc.collect(1) + malloc_trim(0)"
