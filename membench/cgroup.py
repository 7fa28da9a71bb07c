"""Read the memory of a process's own cgroup (v2 or v1), read-only: usage, peak, anon/file split,
limit and OOM kills.

Found once from /proc/<pid>/cgroup and /proc/<pid>/mountinfo; read at every scrape in 3 system
calls per file. `proc_root` and `fs_root` (where mount points live) are injectable for tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from membench.procfs import PROC_ROOT, read_text

FS_ROOT = Path("/")
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")  # mountinfo writes space as \040, etc.


@dataclass(frozen=True, slots=True)
class CgroupFiles:
    """Which file (or memory.stat key) holds each figure in one cgroup version."""

    version: str
    usage: str
    peak: str
    anon: str
    file: str
    limit: str
    events: str  # the file whose `oom_kill N` line counts OOM kills


# v1's memory.stat keys without `total_` count this cgroup alone; usage_in_bytes and
# max_usage_in_bytes count its descendants too, as v2's memory.stat does: take the `total_` keys.
V2 = CgroupFiles(
    "2", "memory.current", "memory.peak", "anon", "file", "memory.max", "memory.events"
)
V1 = CgroupFiles(
    "1",
    "memory.usage_in_bytes",
    "memory.max_usage_in_bytes",
    "total_rss",
    "total_cache",
    "memory.limit_in_bytes",
    "memory.oom_control",
)
# v1 writes "no limit" as the largest page-aligned counter (2^63 - 4096 here); v2 writes "max".
_NO_LIMIT = 2**60


@dataclass(frozen=True, slots=True)
class MemoryCgroup:
    """The memory cgroup of a process: the directory of its memory.* files and their layout."""

    directory: Path
    files: CgroupFiles


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    """Memory of one cgroup in bytes; None where the file or the memory.stat key is missing."""

    usage: int | None
    peak: int | None
    anon: int | None
    file: int | None
    limit: int | None = None  # None: no limit set, or unreadable
    oom_kills: int | None = None


def _unescape(field: str) -> str:
    return _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _memory_mounts(mountinfo: str) -> dict[str, list[tuple[str, str]]]:
    """(root inside the hierarchy, mount point) of every cgroup2 and v1 memory mount, by version."""
    mounts: dict[str, list[tuple[str, str]]] = {"1": [], "2": []}
    for line in mountinfo.splitlines():
        # Fields: id parent dev root mount-point options [optional...] - fstype source super-options
        fields = line.split()
        sep = fields.index("-") if "-" in fields else 0
        if sep < 5 or len(fields) < sep + 4:
            continue
        fstype, super_options = fields[sep + 1], fields[sep + 3].split(",")
        if fstype == "cgroup2":
            version = "2"
        elif fstype == "cgroup" and "memory" in super_options:
            version = "1"
        else:
            continue
        mounts[version].append((_unescape(fields[3]), _unescape(fields[4])))
    return mounts


def _cgroup_paths(membership: str) -> dict[str, str]:
    """The process's cgroup path in the v2 hierarchy (`0::/path`) and the v1 memory one."""
    paths: dict[str, str] = {}
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            paths["2"] = path
        elif "memory" in controllers.split(","):
            paths["1"] = path
    return paths


def mounted_directory(mount_root: str, mount_point: Path, path: str) -> Path:
    """Where `path` (as /proc/<pid>/cgroup names it) is under a mount of the hierarchy.

    A container often mounts its own cgroup as the mount's root: the mount root is then a prefix
    of the path (no cgroup namespace), or the path is `/` relative to a namespaced root. When the
    joined directory does not exist, the mount root is the process's cgroup.
    """
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        path = path[len(mount_root) :]
    relative = Path(path.lstrip("/"))
    # A process moved out of its cgroup namespace reads `/../x`: not under this mount at all.
    if ".." in relative.parts or not (mount_point / relative).is_dir():
        return mount_point
    return mount_point / relative


def find_memory_cgroup(
    pid: int | str = "self", proc_root: Path = PROC_ROOT, fs_root: Path = FS_ROOT
) -> MemoryCgroup | None:
    """The memory cgroup of `pid` whose usage file exists (v2 first, then v1); None if none.

    A v2 hierarchy without the memory controller (hybrid hosts, the root cgroup) has no
    memory.current and is passed over. `pid` must share our mount namespace.
    """
    try:
        paths = _cgroup_paths(read_text(proc_root / str(pid) / "cgroup"))
        mounts = _memory_mounts(read_text(proc_root / str(pid) / "mountinfo"))
    except OSError:
        return None
    for files in (V2, V1):
        if files.version not in paths:
            continue
        for mount_root, mount_point in mounts[files.version]:
            directory = mounted_directory(
                mount_root, fs_root / mount_point.lstrip("/"), paths[files.version]
            )
            if (directory / files.usage).is_file():
                return MemoryCgroup(directory, files)
    return None


def _read_int(path: Path) -> int | None:
    try:
        return int(read_text(path))
    except (OSError, ValueError):
        return None


def _read_stat(path: Path, wanted: set[str]) -> dict[str, int]:
    """The wanted `key value` lines of a memory.stat file; {} if it is unreadable."""
    try:
        pairs = (line.partition(" ") for line in read_text(path).splitlines())
        return {key: int(number) for key, _, number in pairs if key in wanted}
    except (OSError, ValueError):
        return {}


def read_cgroup_memory(cgroup: MemoryCgroup) -> CgroupMemory:
    """Read usage, peak, the anon/file split, the limit and OOM kills now; never an error."""
    files = cgroup.files
    stat = _read_stat(cgroup.directory / "memory.stat", {files.anon, files.file})
    limit = _read_int(cgroup.directory / files.limit)  # v2's "max" reads as None
    return CgroupMemory(
        usage=_read_int(cgroup.directory / files.usage),
        peak=_read_int(cgroup.directory / files.peak),
        anon=stat.get(files.anon),
        file=stat.get(files.file),
        limit=limit if limit is not None and limit < _NO_LIMIT else None,
        oom_kills=_read_stat(cgroup.directory / files.events, {"oom_kill"}).get("oom_kill"),
    )
