"""The worker's malloc: the environment that selects it, which one is active, and handing free
memory back to the kernel (malloc_trim for glibc, an arena purge for jemalloc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from pathlib import Path

ALLOCATORS = ("glibc", "arena2", "jemalloc")
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


def active_allocator() -> str:
    """What this process really allocates with, read from its mappings, not from flags."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    if "libjemalloc" in maps:
        return "jemalloc"
    return "arena2" if os.environ.get("MALLOC_ARENA_MAX") == "2" else "glibc"


def release_free_memory() -> str:
    """Collect garbage, then return the allocator's free pages to the kernel; says what ran."""
    gc.collect()
    libc = ctypes.CDLL(None)
    if active_allocator() == "jemalloc":
        # malloc_trim would trim glibc's (unused) heap; jemalloc keeps freed pages as dirty
        # until it decays them, so purge every arena.
        name = f"arena.{_JEMALLOC_ALL_ARENAS}.purge".encode()
        libc.mallctl(name, None, None, None, ctypes.c_size_t(0))
        return "jemalloc arena purge"
    libc.malloc_trim(0)
    return "malloc_trim(0)"
