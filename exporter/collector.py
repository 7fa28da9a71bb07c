"""A Prometheus collector that reads a worker's processes' memory from /proc at scrape time."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
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
    (
        names.CGROUP_MEMORY_LIMIT_BYTES,
        "Memory limit of the cgroup (v2 memory.max, v1 memory.limit_in_bytes); no sample "
        "when there is none.",
        "limit",
    ),
)

_PROCESS_GAUGES = (
    (names.PROCESS_RSS_BYTES, "Resident set size (VmRSS).", "rss"),
    (
        names.PROCESS_PSS_BYTES,
        "Proportional set size: shared pages divided among their sharers (smaps_rollup).",
        "pss",
    ),
    (names.PROCESS_USS_BYTES, "Unique set size: private pages (smaps_rollup).", "uss"),
    (names.PROCESS_SWAP_BYTES, "Swapped-out memory.", "swap"),
    (
        names.PROCESS_PEAK_RSS_BYTES,
        "Peak resident set size (VmHWM) since process start or the last task's reset.",
        "peak_rss",
    ),
    (names.PROCESS_THREADS, "OS threads of the process (greenlets are not counted).", "threads"),
    (
        names.PROCESS_START_TIME_SECONDS,
        "When the process took its place in the worker (Unix time).",
        "start_time",
    ),
    (
        names.PROCESS_TASKS_IN_PROGRESS,
        "Tasks running in this process now.",
        "tasks_in_progress",
    ),
)


@dataclass(frozen=True, slots=True)
class ProcessSource:
    """One process a collector reads: its label values, its pid, what the instrument knows of it."""

    label_values: tuple[str, ...]
    pid: int | str
    start_time: float | None = None
    tasks_in_progress: float | None = None


class ProcessMemoryCollector(Collector):
    """Memory of one or more processes, read when scraped: no background thread, nothing between
    scrapes. Each family is yielded once, with a sample per process (a worker's main process
    serves its prefork children this way in one-port mode)."""

    def __init__(
        self,
        labels: Mapping[str, str],
        pid: int | str = "self",
        proc_root: Path = PROC_ROOT,
        fs_root: Path = FS_ROOT,
        *,
        sources: Callable[[], Iterable[ProcessSource]] | None = None,
        with_cgroup: bool = True,
    ) -> None:
        self._label_names = list(labels)
        self._pid = pid
        self._proc_root = proc_root
        self._fs_root = fs_root
        self._own = ProcessSource(tuple(labels.values()), pid)
        self._sources = sources or (lambda: (self._own,))
        self._with_cgroup = with_cgroup

    def _family(self, name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=self._label_names)

    def collect(self) -> Iterator[Metric]:
        families = {name: self._family(name, doc) for name, doc, _ in _PROCESS_GAUGES}
        cpu = CounterMetricFamily(
            names.PROCESS_CPU_SECONDS_TOTAL.removesuffix("_total"),
            "User and system CPU time of the process.",
            labels=self._label_names,
        )
        for source in self._sources():
            try:
                memory = read_process_memory(source.pid, self._proc_root)
                cpu_seconds = self.cpu_seconds(source.pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # a child that just exited: its replacement will be read next time
            threads = memory.threads
            values = {
                names.PROCESS_RSS_BYTES: memory.rss,
                names.PROCESS_PSS_BYTES: memory.pss,
                names.PROCESS_USS_BYTES: memory.uss,
                names.PROCESS_SWAP_BYTES: memory.swap,
                names.PROCESS_PEAK_RSS_BYTES: memory.peak_rss,
                names.PROCESS_THREADS: threads
                if threads is not None
                else read_thread_count(source.pid, self._proc_root),
                names.PROCESS_START_TIME_SECONDS: source.start_time,
                names.PROCESS_TASKS_IN_PROGRESS: source.tasks_in_progress,
            }
            for name, value in values.items():
                if value is not None:
                    families[name].add_metric(source.label_values, value)
            cpu.add_metric(source.label_values, cpu_seconds)
        yield from families.values()
        yield cpu
        if self._with_cgroup:
            yield from self._cgroup_families()

    @functools.cached_property
    def _cgroup(self) -> MemoryCgroup | None:
        # Found at the first scrape, then kept: a process's cgroup is fixed for its life, and
        # the lookup (mountinfo) is the expensive part.
        return find_memory_cgroup(self._pid, self._proc_root, self._fs_root)

    def _cgroup_families(self) -> Iterator[Metric]:
        """The cgroup's memory: families always, samples only for the files that exist."""
        cgroup = self._cgroup
        memory = read_cgroup_memory(cgroup) if cgroup is not None else None
        values = self._own.label_values
        for name, doc, field in _CGROUP_GAUGES:
            family = self._family(name, doc)
            value = None if memory is None else getattr(memory, field)
            if value is not None:
                family.add_metric(values, value)
            yield family
        oom = CounterMetricFamily(
            names.CGROUP_OOM_KILLS_TOTAL.removesuffix("_total"),
            "Processes of the cgroup the kernel's OOM killer killed (v2 memory.events oom_kill, "
            "v1 memory.oom_control oom_kill).",
            labels=self._label_names,
        )
        if memory is not None and memory.oom_kills is not None:
            oom.add_metric(values, memory.oom_kills)
        yield oom
        info = InfoMetricFamily(
            names.CGROUP_INFO.removesuffix("_info"),
            "The cgroup version the membench_cgroup_memory_* series are read from.",
            labels=self._label_names,
        )
        if cgroup is not None:
            info.add_metric(values, {names.CGROUP_VERSION_LABEL: cgroup.files.version})
        yield info

    def cpu_seconds(self, pid: int | str | None = None) -> float:
        # Our own CPU time without reading /proc/self/stat: clock_gettime keeps the GIL, and a
        # scrape's latency under load grows with every system call that releases it.
        pid = self._pid if pid is None else pid
        if pid == "self" and self._proc_root == PROC_ROOT:
            return time.process_time()
        return read_cpu_seconds(pid, self._proc_root)

    def describe(self) -> Iterator[Metric]:
        # Registration must not read /proc; yield empty families with the right names.
        for name, _, _ in _PROCESS_GAUGES:
            yield self._family(name, "")
        yield CounterMetricFamily(
            names.PROCESS_CPU_SECONDS_TOTAL.removesuffix("_total"), "", labels=self._label_names
        )
        if self._with_cgroup:
            for name, _, _ in _CGROUP_GAUGES:
                yield self._family(name, "")
            yield CounterMetricFamily(
                names.CGROUP_OOM_KILLS_TOTAL.removesuffix("_total"), "", labels=self._label_names
            )
            yield InfoMetricFamily(
                names.CGROUP_INFO.removesuffix("_info"), "", labels=self._label_names
            )


class WorkerInfoCollector(Collector):
    """membench_worker_info = 1: the process's labels, the Celery version and what it runs with."""

    def __init__(self, labels: Mapping[str, str], **info: str) -> None:
        import celery

        self._labels = dict(labels)
        self._info = {"celery_version": str(celery.__version__), **info}

    def collect(self) -> Iterator[Metric]:
        family = InfoMetricFamily(
            names.WORKER_INFO.removesuffix("_info"),
            "Identity of this worker process.",
            labels=list(self._labels),
        )
        family.add_metric(list(self._labels.values()), self._info)
        yield family
