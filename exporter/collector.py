"""A Prometheus collector that reads this process's memory from /proc at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from membench.exporter import names
from membench.procfs import (
    PROC_ROOT,
    read_cpu_seconds,
    read_process_memory,
    read_thread_count,
)


class ProcessMemoryCollector(Collector):
    """Memory of one process, read when scraped: no background thread, nothing between scrapes."""

    def __init__(
        self, labels: Mapping[str, str], pid: int | str = "self", proc_root: Path = PROC_ROOT
    ) -> None:
        self._label_names = list(labels)
        self._label_values = list(labels.values())
        self._pid = pid
        self._proc_root = proc_root

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
        ):
            yield GaugeMetricFamily(name, "", labels=self._label_names)
        yield CounterMetricFamily(
            names.PROCESS_CPU_SECONDS_TOTAL.removesuffix("_total"), "", labels=self._label_names
        )
