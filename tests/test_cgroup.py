"""The cgroup memory reader and its exporter series: fixture trees of v1 and v2 (injected roots),
and this machine's own cgroup, read directly and through a real worker's exporter."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import GOOD_PARAMS, StartWorker, exporter_addresses, samples, scrape, send_batch
from prometheus_client import CollectorRegistry, generate_latest

from membench.cgroup import (
    V2,
    CgroupMemory,
    MemoryCgroup,
    find_memory_cgroup,
    mounted_directory,
    read_cgroup_memory,
)
from membench.exporter import names
from membench.exporter.collector import ProcessMemoryCollector

TREES = Path(__file__).parent / "fixtures" / "cgroup"
IDENTITY = {"scenario": "prefork_threads", "pool": "prefork", "strategy": "threads", "role": "main"}
CGROUP_SERIES = (
    names.CGROUP_MEMORY_USAGE_BYTES,
    names.CGROUP_MEMORY_PEAK_BYTES,
    names.CGROUP_MEMORY_ANON_BYTES,
    names.CGROUP_MEMORY_FILE_BYTES,
    names.CGROUP_INFO,
)


def read_tree(tree: str) -> tuple[str, Path, CgroupMemory]:
    """(version, directory relative to the tree, memory) of a fixture tree's cgroup."""
    root = TREES / tree
    cgroup = find_memory_cgroup(proc_root=root / "proc", fs_root=root)
    assert cgroup is not None, tree
    relative = cgroup.directory.relative_to(root)
    return cgroup.files.version, relative, read_cgroup_memory(cgroup)


def exposition(tree: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """One scrape of a collector reading a fixture tree, as samples by name."""
    root = TREES / tree
    registry = CollectorRegistry()
    registry.register(ProcessMemoryCollector(IDENTITY, proc_root=root / "proc", fs_root=root))
    return samples(generate_latest(registry).decode())


def cgroup_samples(text_samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, Any]:
    return {name: series for name, series in text_samples.items() if name in CGROUP_SERIES}


def test_v2_reads_current_peak_and_the_anon_file_split() -> None:
    version, directory, memory = read_tree("v2")
    assert version == "2"
    assert directory == Path("sys/fs/cgroup/system.slice/membench-worker.service")
    assert memory == CgroupMemory(
        usage=157286400,
        peak=209715200,
        anon=104857600,
        file=41943040,
        limit=536870912,  # memory.max
        oom_kills=3,  # memory.events oom_kill, not oom (the kills, not the OOM events)
    )


def test_v1_maps_hierarchical_rss_and_cache_to_anon_and_file() -> None:
    # A hybrid host: the cgroup2 mount has no memory controller, so v1's memory one is read; the
    # memory mount's root is the container's own cgroup, so the cgroup is the mount point.
    version, directory, memory = read_tree("v1")
    assert version == "1"
    assert directory == Path("sys/fs/cgroup/memory")
    # total_rss/total_cache, as usage_in_bytes counts descendants; rss/cache (8192/4096) do not.
    # No limit: v1 writes the largest page-aligned counter, which is no limit at all.
    assert memory == CgroupMemory(
        usage=68104192, peak=70000640, anon=1695744, file=64512000, limit=None, oom_kills=1
    )


def test_a_kernel_without_memory_peak_has_no_peak_and_the_rest() -> None:
    version, directory, memory = read_tree("v2_no_peak")  # `0::/` in a cgroup namespace
    assert (version, directory) == ("2", Path("sys/fs/cgroup"))
    assert memory == CgroupMemory(usage=52428800, peak=None, anon=31457280, file=16777216)


def test_a_path_missing_under_the_mount_falls_back_to_the_mount_root() -> None:
    version, directory, memory = read_tree("v2_fallback")
    assert (version, directory) == ("2", Path("host cgroup"))  # mountinfo's \040 is a space
    assert memory.usage == 73400320 and memory.peak == 83886080


def test_a_path_outside_the_namespace_is_never_followed_up_the_tree(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "elsewhere").mkdir()  # `/../elsewhere` joined to the mount point exists
    assert mounted_directory("/", tmp_path / "mnt", "/../elsewhere") == tmp_path / "mnt"


def test_no_memory_controller_means_no_cgroup_and_no_series() -> None:
    root = TREES / "no_memory"
    assert find_memory_cgroup(proc_root=root / "proc", fs_root=root) is None
    scraped = exposition("no_memory")
    assert cgroup_samples(scraped) == {}
    assert scraped[names.PROCESS_RSS_BYTES]  # the process's own series are still there


def test_unreadable_proc_or_vanished_cgroup_files_are_none_never_an_error(tmp_path: Path) -> None:
    assert find_memory_cgroup(proc_root=tmp_path, fs_root=tmp_path) is None
    vanished = MemoryCgroup(tmp_path / "removed", V2)
    assert read_cgroup_memory(vanished) == CgroupMemory(usage=None, peak=None, anon=None, file=None)


def test_v1_and_v2_give_the_same_series_with_identity_labels_and_no_pid() -> None:
    v1, v2 = cgroup_samples(exposition("v1")), cgroup_samples(exposition("v2"))
    assert set(v1) == set(v2) == set(CGROUP_SERIES)
    for name, series in v2.items():
        (labels, _), *others = series
        assert not others, name
        info_labels = {names.CGROUP_VERSION_LABEL} if name == names.CGROUP_INFO else set()
        assert set(labels) == set(IDENTITY) | info_labels, name
    assert v2[names.CGROUP_INFO] == [(IDENTITY | {"version": "2"}, 1.0)]
    assert v1[names.CGROUP_INFO] == [(IDENTITY | {"version": "1"}, 1.0)]
    assert v2[names.CGROUP_MEMORY_FILE_BYTES] == [(IDENTITY, 41943040.0)]


def test_every_scrape_exposes_the_same_series() -> None:
    first, second = exposition("v2"), exposition("v2")
    assert {n: [lbl for lbl, _ in s] for n, s in first.items()} == {
        n: [lbl for lbl, _ in s] for n, s in second.items()
    }


def machine_has_memory_cgroup() -> bool:
    """Whether this host gives processes a memory cgroup (independent of membench/cgroup.py)."""
    v1 = any(
        "memory" in line.split(":")[1].split(",")
        for line in Path("/proc/self/cgroup").read_text().splitlines()
    )
    unified = Path("/sys/fs/cgroup/cgroup.controllers")
    return v1 or (unified.exists() and "memory" in unified.read_text().split())


needs_memory_cgroup = pytest.mark.skipif(
    not machine_has_memory_cgroup(), reason="no memory cgroup on this machine"
)


@needs_memory_cgroup
def test_this_process_cgroup_is_found_and_read() -> None:
    cgroup = find_memory_cgroup()
    assert cgroup is not None
    # cgroup.procs of the directory found lists this very process: it is our cgroup.
    assert str(os.getpid()) in (cgroup.directory / "cgroup.procs").read_text().split()
    memory = read_cgroup_memory(cgroup)
    assert memory.usage is not None and memory.usage > 0
    assert memory.anon is not None and memory.anon > 0
    assert memory.file is not None


@pytest.mark.slow
@needs_memory_cgroup
def test_a_real_worker_exports_its_cgroup_memory_and_no_new_series(
    start_worker: StartWorker, celery_app: Any
) -> None:
    worker = start_worker("prefork_sequential")
    addresses = [a for role in exporter_addresses(worker).values() for a in role]
    assert len(addresses) == 2  # main and child: the same cgroup, both export it

    def series(address: str) -> dict[str, list[dict[str, str]]]:
        scraped = samples(scrape(address))
        usage = scraped[names.CGROUP_MEMORY_USAGE_BYTES]
        assert len(usage) == 1 and usage[0][1] > 0
        assert {"pid", "task_id"}.isdisjoint(usage[0][0])
        assert set(usage[0][0]) == {*IDENTITY, "child"}
        assert set(CGROUP_SERIES) <= set(scraped)
        return {name: [labels for labels, _ in found] for name, found in scraped.items()}

    before = {address: series(address) for address in addresses}
    assert send_batch(celery_app, worker, **GOOD_PARAMS).get(timeout=60)["subtasks_done"] == 2
    for address in addresses:
        after = series(address)
        # A task name's series appear with its first run, in the main process only: bounded by
        # the app's registered task names, never by runs. Every other series was there before.
        for name in set(after) - set(before[address]):
            assert name.startswith(("membench_task_", "membench_tasks_")), name
            assert {labels[names.TASK_LABEL] for labels in after[name]} == {names.BENCHMARK_TASK}
        assert {name: after[name] for name in before[address]} == before[address], address


def test_the_limit_and_oom_kills_are_exported_where_set() -> None:
    v2 = exposition("v2")
    assert [v for _, v in v2[names.CGROUP_MEMORY_LIMIT_BYTES]] == [536870912]
    assert [v for _, v in v2[names.CGROUP_OOM_KILLS_TOTAL]] == [3]
    v1 = exposition("v1")
    # No limit, no sample: usage / limit is then empty, not a tiny ratio.
    assert names.CGROUP_MEMORY_LIMIT_BYTES not in v1
    assert [v for _, v in v1[names.CGROUP_OOM_KILLS_TOTAL]] == [1]
