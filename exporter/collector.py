"""A Prometheus collector that reads this process's memory from /proc at scrape time."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from membench.cgroup import FS_ROOT, MemoryCgroup, find_memory_cgroup, read_cgroup_memory
from membench.exporter import names
from membench.procfs import (
    PROC_ROOT,
    read_cpu_seconds,
    read_process_memory,
    read_thread_count,
)

# (name, help, CgroupMemory field). The help says the values are per cgroup, not per process.
_CGROUP_GAUGES = (
    (
        names.CGROUP_MEMORY_USAGE_BYTES,
        "Memory charged to this process's cgroup, page cache included: what its memory limit "
        "counts (v2 memory.current, v1 memory.usage_in_bytes). Same for every process in it.",
        "usage",
    ),
    (
        names.CGROUP_MEMORY_PEAK_BYTES,
        "Peak memory charged to the cgroup (v2 memory.peak, v1 memory.max_usage_in_bytes).",
        "peak",
    ),
    (
        names.CGROUP_MEMORY_ANON_BYTES,
        "Anonymous memory of the cgroup (v2 memory.stat anon, v1 total_rss).",
        "anon",
    ),
    (
        names.CGROUP_MEMORY_FILE_BYTES,
        "Page cache of the cgroup, tmpfs included (v2 memory.stat file, v1 total_cache).",
        "file",
    ),
)


class ProcessMemoryCollector(Collector):
    """Memory of one process, read when scraped: no background thread, nothing between scrapes."""

    def __init__(
        self,
        labels: Mapping[str, str],
        pid: int | str = "self",
        proc_root: Path = PROC_ROOT,
        fs_root: Path = FS_ROOT,
    ) -> None:
        self._label_names = list(labels)
        self._label_values = list(labels.values())
        self._pid = pid
        self._proc_root = proc_root
        self._fs_root = fs_root

    def _gauge(self, name: str, doc: str, value: float | None) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=self._label_names)
        if value is not None:
            family.add_metric(self._label_values, value)
        return family

    def collect(self) -> Iterator[Metric]:
        memory = read_process_memory(self._pid, self._proc_root)
        yield self._gauge(names.PROCESS_RSS_BYTES, "Resident set size (VmRSS).", memory.rss)
        yield self._gauge(
            names.PROCESS_PSS_BYTES,
            "Proportional set size: shared pages divided among their sharers (smaps_rollup).",
            memory.pss,
        )
        yield self._gauge(
            names.PROCESS_USS_BYTES, "Unique set size: private pages (smaps_rollup).", memory.uss
        )
        yield self._gauge(names.PROCESS_SWAP_BYTES, "Swapped-out memory.", memory.swap)
        yield self._gauge(
            names.PROCESS_PEAK_RSS_BYTES,
            "Peak resident set size (VmHWM) since process start or the last task's reset.",
            memory.peak_rss,
        )
        yield self._gauge(
            names.PROCESS_THREADS,
            "OS threads of the process (greenlets are not counted).",
            memory.threads
            if memory.threads is not None
            else read_thread_count(self._pid, self._proc_root),
        )
        cpu = CounterMetricFamily(
            names.PROCESS_CPU_SECONDS_TOTAL.removesuffix("_total"),
            "User and system CPU time of the process.",
            labels=self._label_names,
        )
        cpu.add_metric(self._label_values, self._cpu_seconds())
        yield cpu
        yield from self._cgroup_families()

    @functools.cached_property
    def _cgroup(self) -> MemoryCgroup | None:
        # Found at the first scrape, then kept: a process's cgroup is fixed for its life, and
        # the lookup (mountinfo) is the expensive part. Reading it costs 9 system calls a scrape.
        return find_memory_cgroup(self._pid, self._proc_root, self._fs_root)

    def _cgroup_families(self) -> Iterator[Metric]:
        """The cgroup's memory: families always, samples only for the files that exist."""
        cgroup = self._cgroup
        memory = read_cgroup_memory(cgroup) if cgroup is not None else None
        for name, doc, field in _CGROUP_GAUGES:
            yield self._gauge(name, doc, None if memory is None else getattr(memory, field))
        info = InfoMetricFamily(
            names.CGROUP_INFO.removesuffix("_info"),
            "The cgroup version the membench_cgroup_memory_* series are read from.",
            labels=self._label_names,
        )
        if cgroup is not None:
            version = {names.CGROUP_VERSION_LABEL: cgroup.files.version}
            info.add_metric(self._label_values, version)
        yield info

    def _cpu_seconds(self) -> float:
        # Our own CPU time without reading /proc/self/stat: clock_gettime keeps the GIL, and a
        # scrape's latency under load grows with every system call that releases it.
        if self._pid == "self" and self._proc_root == PROC_ROOT:
            return time.process_time()
        return read_cpu_seconds(self._pid, self._proc_root)

    def describe(self) -> Iterator[Metric]:
        # Registration must not read /proc; yield empty families with the right names.
        for name in (
            names.PROCESS_RSS_BYTES,
            names.PROCESS_PSS_BYTES,
            names.PROCESS_USS_BYTES,
            names.PROCESS_SWAP_BYTES,
            names.PROCESS_PEAK_RSS_BYTES,
            names.PROCESS_THREADS,
            *(name for name, _, _ in _CGROUP_GAUGES),
        ):
            yield GaugeMetricFamily(name, "", labels=self._label_names)
        yield InfoMetricFamily(
            names.CGROUP_INFO.removesuffix("_info"), "", labels=self._label_names
        )
        yield CounterMetricFamily(
            names.PROCESS_CPU_SECONDS_TOTAL.removesuffix("_total"), "", labels=self._label_names
        )
