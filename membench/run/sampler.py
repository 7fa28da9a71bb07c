"""Sample a worker's process tree memory from outside, at a fixed period, on a thread; reset
and sum the tree's high-water marks; the timeline results.json keeps."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from dataclasses import dataclass

from membench.procfs import list_tree, read_process_memory, read_status_memory, reset_peak_rss
from membench.results.model import SamplerStats, Timeline


@dataclass(frozen=True, slots=True)
class TreeMemory:
    """One reading of a process tree: wall-clock time, summed RSS and PSS, process count, and
    how many of its processes were stopped (SIGSTOP, a tracer): a stalled worker."""

    t: float
    rss: int
    pss: int
    processes: int
    stopped: int = 0


def read_tree_memory(root_pid: int) -> TreeMemory:
    """RSS and PSS summed over `root_pid` and its descendants (processes may vanish meanwhile)."""
    rss = pss = count = stopped = 0
    for pid in list_tree(root_pid):
        try:
            memory = read_process_memory(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        rss += memory.rss
        pss += memory.pss if memory.pss is not None else memory.rss
        count += 1
        stopped += memory.stopped
    return TreeMemory(time.time(), rss, pss, count, stopped)


def reset_tree_peaks(pids: list[int]) -> None:
    for pid in pids:
        reset_peak_rss(pid)


def tree_hwm_sum(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += read_status_memory(pid)[1]
    return total


def tree_timeline(samples: list[TreeMemory], origin: float) -> Timeline:
    return Timeline(
        t_s=[round(s.t - origin, 4) for s in samples],
        rss_bytes=[s.rss for s in samples],
        pss_bytes=[s.pss for s in samples],
    )


class TreeSampler:
    """Reads the tree every `interval` seconds; counts ticks that ran late, so jitter is known."""

    def __init__(self, root_pid: int, interval: float = 0.05, late_after: float = 0.010) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.late_after = late_after
        self.samples: list[TreeMemory] = []
        self.ticks = 0
        self.late_ticks = 0
        self.missed_ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="membench-sampler", daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            lateness = now - next_tick
            self.ticks += 1
            if lateness > self.late_after:
                self.late_ticks += 1
            sample = read_tree_memory(self.root_pid)
            if sample.processes:
                self.samples.append(sample)
            next_tick += self.interval
            now = time.monotonic()
            if now > next_tick:  # a tick took longer than the period: skip, and say so
                skipped = int((now - next_tick) / self.interval) + 1
                self.missed_ticks += skipped
                next_tick += skipped * self.interval
            self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def between(self, start: float, end: float) -> list[TreeMemory]:
        return [s for s in list(self.samples) if start <= s.t <= end]

    def stalled_seconds(self, start: float, end: float) -> float:
        """How long, between `start` and `end`, some process of the tree was seen stopped."""
        window = self.between(start, end)
        return sum(
            later.t - earlier.t for earlier, later in itertools.pairwise(window) if earlier.stopped
        )

    def latest(self) -> TreeMemory | None:
        return self.samples[-1] if self.samples else None

    def stats(self) -> SamplerStats:
        on_time = self.ticks - self.late_ticks
        return SamplerStats(
            interval_s=self.interval,
            ticks=self.ticks,
            late_ticks=self.late_ticks,
            missed_ticks=self.missed_ticks,
            on_time_ratio=on_time / self.ticks if self.ticks else 0.0,
        )
